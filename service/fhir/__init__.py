"""The FHIR R4 facade (`/fhir/R4`): Patient, Goal, Observation and Flag over the one service layer."""
