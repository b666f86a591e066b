"""Reporting: results tables and captions, findings with their verdict rule, paper numbers and claims, the long
path's committed results, figures, the notebooks' helpers and the README's generated blocks."""
