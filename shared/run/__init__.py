"""One run of one export: *what* happens, as a straight list of stages (`exporter` is the whole,
`flows` the three ways a run goes), each stage one module: reading, delivery, confirming,
mirror removals, checkpoints, the nothing-changed shortcut, the rejects file and the shared
context.

May import `services` and everything below it; never the engine or the composition root.
"""
