"""Readers for cache/block traces from other tools: libCacheSim oracleGeneral, CSV/txt, block traces."""
