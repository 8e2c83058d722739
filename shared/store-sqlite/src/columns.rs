//! Reading typed columns. The domain's ids and times know nothing of SQLite (the domain does
//! no I/O), so the conversion lives here: ids and times are stored as TEXT and INTEGER, and
//! a stored id that breaks the id rule is a corrupt row, reported as an error.

use rusqlite::types::Type;
use rusqlite::Row;

use domain::catalog::EventType;
use domain::ids::InvalidId;
use domain::time::Timestamp;

pub(crate) trait Columns {
    fn id<T: TryFrom<String, Error = InvalidId>>(&self, i: usize) -> rusqlite::Result<T>;
    fn time(&self, i: usize) -> rusqlite::Result<Timestamp>;
    fn time_opt(&self, i: usize) -> rusqlite::Result<Option<Timestamp>>;
    fn event_type(&self, i: usize) -> rusqlite::Result<EventType>;
}

impl Columns for Row<'_> {
    fn id<T: TryFrom<String, Error = InvalidId>>(&self, i: usize) -> rusqlite::Result<T> {
        let text: String = self.get(i)?;
        T::try_from(text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
    }

    fn time(&self, i: usize) -> rusqlite::Result<Timestamp> {
        self.get(i).map(Timestamp::from_millis)
    }

    fn time_opt(&self, i: usize) -> rusqlite::Result<Option<Timestamp>> {
        Ok(self.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
    }

    fn event_type(&self, i: usize) -> rusqlite::Result<EventType> {
        self.get(i).map(EventType::from_stored)
    }
}

/// A time as stored: milliseconds since the epoch.
pub(crate) fn ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_millis)
}
