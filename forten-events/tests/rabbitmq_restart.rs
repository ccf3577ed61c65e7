//! A real broker restart in the middle of a publish-and-consume workload
//! (its own test binary, so it never overlaps the other RabbitMQ tests).
