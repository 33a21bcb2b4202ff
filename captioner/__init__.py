"""captioner: the code shared by training, export, inference and UI.

Only numpy and Pillow live here (no TensorFlow), so that the serving images can
import it: text normalisation and the vocabulary, image preprocessing, and the
decoding algorithms.
"""

__version__ = "0.1.0"
