"""Headwatch data: the claims catalog (CSV), the rules that label claims, the generator and the tokenizer."""
