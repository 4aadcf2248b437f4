"""Evaluation: the official metrics of the five SocialFusion tasks."""
