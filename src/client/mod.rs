//! HTTP clients for GitHub's runner protocol: registration, OAuth, sessions, messages, jobs.
