"""The language server: JSON-RPC over stdio (pygls), the LSP lifecycle, the podlink requests
(one typed handler class, bound from the protocol's request table), notifications, progress
and log levels. Handlers check params, call into sessions and build results; no business
logic lives here.
"""
