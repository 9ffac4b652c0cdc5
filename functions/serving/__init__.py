"""The HTTP shell around the stages, shared by every target of functions.main: the gate every
request passes (gate), how targets answer (answers: CloudEvent replies, cycles, errors from the one
error table) and the process singletons built on first use (wiring)."""
