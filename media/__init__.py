"""The SFU: forwards encoded media between call participants; never imports ``signaling``."""
