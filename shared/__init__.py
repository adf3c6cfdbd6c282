"""ci-sendgrid-export: export Customer Insights segments from Blob Storage to SendGrid lists.

All logic lives in this package; the function folders only translate host requests into calls.
"""
