"""The one collection machinery: every collection is listed, read, created, patched, deleted,
versioned and synced by this code, parameterised by its model, schemas and rules."""
