"""Word-level language modelling: corpora, contiguous-stream batching, a decoder-only transformer, the task."""
