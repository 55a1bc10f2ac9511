"""Notifications: the /notify family (email, sms, webhook), GET /notifications/{id}, and typed
notifications (POST /notifications: an email from templates to a user)."""
