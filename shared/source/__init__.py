"""Reading a Customer Insights export: `blob` (the only module that reads the source container,
as a stream of rows), `cdm` (model.json / manifest metadata, pure) and `csv_rows` (a
partition's CSV records read strictly as its CDM settings say, in bounded memory, pure).
Finding the exports in the container, from listings and metadata only (GET /api/sources):
`walk` (the container's folders, a bounded number of listing pages a request, and the
continuation token) and `discovery` (each export folder described with `cdm`'s parsing).

May import `storage` and the contracts; nothing of SendGrid, the state or the run.
"""
