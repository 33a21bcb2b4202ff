"""The Streamlit page and its launcher; feedback is the ``feedback`` package's. No TensorFlow."""
