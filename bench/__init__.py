"""`make bench`: the export against a minimal streaming loop, on Azurite and the SendGrid sandbox."""
