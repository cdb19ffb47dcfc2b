//! Names, descriptions and JSON Schemas of the functions the model may call.
//!
//! The schemas are what the model is told in `session.update` (`tools`); the handlers in
//! `tools::handlers` validate the same constraints again, because the model does not always
//! follow them.

use serde_json::{json, Value};

/// `check_availability`: free slots for a service.
pub const CHECK_AVAILABILITY: &str = "check_availability";
/// `book_appointment`: book a slot.
pub const BOOK_APPOINTMENT: &str = "book_appointment";
/// `find_appointments`: look up the caller's appointments.
pub const FIND_APPOINTMENTS: &str = "find_appointments";
/// `reschedule_appointment`: move a booking.
pub const RESCHEDULE_APPOINTMENT: &str = "reschedule_appointment";
/// `cancel_appointment`: cancel a booking.
pub const CANCEL_APPOINTMENT: &str = "cancel_appointment";
/// `get_business_info`: hours, address, services and prices.
pub const GET_BUSINESS_INFO: &str = "get_business_info";

/// Every tool, in the order they are offered.
pub const TOOL_NAMES: [&str; 6] = [
    GET_BUSINESS_INFO,
    CHECK_AVAILABILITY,
    BOOK_APPOINTMENT,
    FIND_APPOINTMENTS,
    RESCHEDULE_APPOINTMENT,
    CANCEL_APPOINTMENT,
];

/// Most slots one `check_availability` returns.
pub const MAX_RESULTS: u32 = 10;
/// Slots returned when `max_results` is omitted.
pub const DEFAULT_RESULTS: u32 = 3;
/// Longest date range of one `check_availability`, in days.
pub const MAX_RANGE_DAYS: i64 = 31;
/// Longest customer name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest notes or reason accepted, in characters.
pub const MAX_NOTES_CHARS: usize = 500;

const LOCAL_TIME: &str = "Local time of the clinic as YYYY-MM-DDTHH:MM, without offset. Copy a \
    start returned by check_availability exactly (a few listed in the hour that repeats when the \
    clocks go back carry an offset such as +01:00; keep it).";

/// `(description, parameters)` of a tool, or `None` for an unknown name.
pub fn describe(name: &str) -> Option<(&'static str, Value)> {
    let service = json!({
        "type": "string",
        "description": "Service id or name, e.g. \"checkup\" (see get_business_info)."
    });
    let provider = json!({
        "type": "string",
        "description": "Provider id or name (e.g. \"Dr. Weber\"), only if the caller asks for someone specific."
    });
    let phone = json!({
        "type": "string",
        "description": "Phone number. Omit to use the number the caller is calling from."
    });
    let code = json!({
        "type": "string",
        "description": "The booking's confirmation code (6 letters and digits)."
    });
    let date = |what: &str| json!({"type": "string", "format": "date", "description": what});
    Some(match name {
        GET_BUSINESS_INFO => (
            "Get the clinic's name, address, phone number, opening hours, services with durations \
             and prices, providers, upcoming closures, and today's date and current local time. \
             Call it before answering questions about these; never guess.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        CHECK_AVAILABILITY => (
            "Find free appointment times for a service. Returns up to max_results slots, earliest \
             first, in the clinic's local time; if none are free in the range, next_available \
             lists the next ones. Offer the caller one or two of them.",
            json!({
                "type": "object",
                "properties": {
                    "service": service,
                    "date": date("One local date, YYYY-MM-DD."),
                    "date_from": date("First local date of a range, YYYY-MM-DD (default: today)."),
                    "date_to": date("Last local date of a range (inclusive, at most 31 days; default: a week after date_from)."),
                    "time_of_day": {
                        "type": "string",
                        "enum": ["morning", "afternoon", "evening", "any"],
                        "description": "Preferred part of the day: morning before 12:00, afternoon 12:00-17:00, evening from 17:00."
                    },
                    "provider": provider,
                    "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "description": "How many slots to return (default 3)."}
                },
                "required": ["service"],
                "additionalProperties": false
            }),
        ),
        BOOK_APPOINTMENT => (
            "Book an appointment at a free start time (from check_availability). First confirm the \
             service, day, time and the caller's name with them. Returns a confirmation code: read \
             it back to the caller character by character. If the time was just taken, the result \
             lists the nearest free alternatives.",
            json!({
                "type": "object",
                "properties": {
                    "service": service,
                    "start": {"type": "string", "description": LOCAL_TIME},
                    "customer_name": {"type": "string", "maxLength": MAX_NAME_CHARS, "description": "The patient's full name."},
                    "phone": phone,
                    "notes": {"type": "string", "maxLength": MAX_NOTES_CHARS, "description": "Anything the clinic should know (symptoms, first visit, ...)."},
                    "provider": provider
                },
                "required": ["service", "start", "customer_name"],
                "additionalProperties": false
            }),
        ),
        FIND_APPOINTMENTS => (
            "Look up upcoming appointments by phone number (default: the number the caller is \
             calling from) or by the patient's name, optionally on one date. Confirmation codes \
             are only shown for appointments booked under the caller's phone number.",
            json!({
                "type": "object",
                "properties": {
                    "phone": phone,
                    "name": {"type": "string", "description": "Patient name, or part of it."},
                    "date": date("Only appointments on this local date, YYYY-MM-DD.")
                },
                "additionalProperties": false
            }),
        ),
        RESCHEDULE_APPOINTMENT => (
            "Move an existing appointment to a new start time. Needs its confirmation code; the \
             phone number must match the booking (default: the caller's number). Check the new \
             time with check_availability first. The provider stays the same when free, unless \
             another is requested.",
            json!({
                "type": "object",
                "properties": {
                    "confirmation_code": code,
                    "new_start": {"type": "string", "description": LOCAL_TIME},
                    "phone": phone,
                    "provider": provider
                },
                "required": ["confirmation_code", "new_start"],
                "additionalProperties": false
            }),
        ),
        CANCEL_APPOINTMENT => (
            "Cancel an appointment by its confirmation code. The phone number must match the \
             booking (default: the caller's number). Confirm with the caller before cancelling.",
            json!({
                "type": "object",
                "properties": {
                    "confirmation_code": code,
                    "phone": phone,
                    "reason": {"type": "string", "maxLength": MAX_NOTES_CHARS, "description": "Why, if the caller says."}
                },
                "required": ["confirmation_code"],
                "additionalProperties": false
            }),
        ),
        _ => return None,
    })
}
