"""Reading a Customer Insights export: `blob` (the only module that reads the source container,
as a stream of rows), `cdm` (model.json / manifest metadata, pure) and `csv_rows` (a
partition's CSV records read strictly as its CDM settings say, in bounded memory, pure).

May import `storage` and the contracts; nothing of SendGrid, the state or the run.
"""
