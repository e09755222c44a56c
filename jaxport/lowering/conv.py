"""Convolutions: conv_general_dilated."""
