"""SocialFusion: unified visual social-interaction understanding (arXiv 2512.01148)."""

__version__ = "0.1.0"
