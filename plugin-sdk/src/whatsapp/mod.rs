//! WhatsApp webhook payload types (On-Premises API, and the Cloud API envelope).
