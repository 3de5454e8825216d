"""deepmlf: DeepMLF multimodal language fusion for multimodal sentiment analysis."""

__version__ = "0.1.0"
