"""HTTP plumbing every router shares: dependencies, the unit of work, problems, middleware, cursors, OpenAPI."""
