"""Users: the contact data typed notifications resolve a userId against (PUT, GET /users/{userId})."""
