"""What a feature is: definitions, registry, and the one implementation of SPEC §4 semantics.

This package imports neither `pipelines` nor `serving`; both of those import it.
"""
