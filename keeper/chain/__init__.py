"""All RPC I/O of the keeper: JSON-RPC clients, batched reads and chunked log queries."""
