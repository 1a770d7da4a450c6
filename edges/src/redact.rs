//! (to be written: the one URL redaction, used in every error and log line)
