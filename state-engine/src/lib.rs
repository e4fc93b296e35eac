//! Pure decision core of knmstate: conditions, aggregation, concurrency, selection, rendering, filtering, plans
//!
//! (skeleton: filled in by its own issue)
