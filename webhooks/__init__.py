"""HTTP edges other than the dashboard: git-provider push events, AdmissionReview,
outbound notifications."""
