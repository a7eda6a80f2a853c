"""XiaoQ (小Q): a fast, private chatbot that runs Qwen2.5 GGUF models on a plain CPU."""

__version__ = "0.1.0"
