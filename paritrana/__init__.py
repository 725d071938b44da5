"""Paritrana Warehouse: the batch data platform behind Indonesia's Paritrana Award."""
__version__ = "0.3.11"
