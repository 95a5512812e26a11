//! SMS codec (TS 23.038, 23.040, 24.011); filled in by the SMS codec work.
