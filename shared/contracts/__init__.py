"""Wire contracts between services: Kafka topics, the event envelope and its versioned payloads, and the bodies
of internal HTTP calls. A field is only ever added as optional within a version; consumers ignore unknown
fields (extra="ignore"); golden samples under tests/contract/samples/ pin each shape."""
