//! Reading what Lambda's SQS event source hands a function.

use aws_lambda_events::event::sqs::SqsMessage;

/// A record with the fields every handler needs, or `None` for a record without them.
pub(crate) struct Record<'a> {
    pub message_id: &'a str,
    pub receipt_handle: &'a str,
    pub body: &'a str,
    pub receive_count: u32,
}

impl<'a> Record<'a> {
    pub fn from_message(m: &'a SqsMessage) -> Option<Self> {
        Some(Record {
            message_id: m.message_id.as_deref()?,
            receipt_handle: m.receipt_handle.as_deref().unwrap_or(""),
            body: m.body.as_deref()?,
            receive_count: m
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
        })
    }
}
