"""The rating set humans label, and their 1–5 ratings: sampling, import/export, agreement."""
