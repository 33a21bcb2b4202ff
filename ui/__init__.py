"""The Streamlit page and the feedback store. No TensorFlow."""
