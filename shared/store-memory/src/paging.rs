//! Newest-first listings keyed by (time, id), with the embedded adapter's cursors: the last
//! item's pair, `{time}.{id}`. Anything else given as a cursor is `InvalidCursor`.

use app::ports::Page;
use app::{Error, Result};

/// Where a listing resumes: strictly before this (time, id).
pub(crate) struct Before {
    at: i64,
    id: String,
}

impl Before {
    pub fn parse(cursor: Option<&str>) -> Result<Self> {
        match cursor {
            None => Ok(Before {
                at: i64::MAX,
                id: String::new(),
            }),
            Some(c) => c
                .split_once('.')
                .and_then(|(at, id)| {
                    Some(Before {
                        at: at.parse().ok()?,
                        id: id.to_string(),
                    })
                })
                .ok_or(Error::InvalidCursor),
        }
    }

    fn admits(&self, (at, id): (i64, &str)) -> bool {
        at < self.at || (at == self.at && id < self.id.as_str())
    }
}

/// The page of `items` before `before`, newest first, and the cursor of the next page when
/// more follow.
pub(crate) fn newest_first<T>(
    items: impl IntoIterator<Item = T>,
    before: &Before,
    limit: usize,
    key: impl Fn(&T) -> (i64, &str),
) -> Page<T> {
    let mut rows: Vec<T> = items
        .into_iter()
        .filter(|item| before.admits(key(item)))
        .collect();
    rows.sort_by(|a, b| key(b).cmp(&key(a)));
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|r| {
            let (at, id) = key(r);
            format!("{at}.{id}")
        })
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(x: &(i64, String)) -> (i64, &str) {
        (x.0, x.1.as_str())
    }

    fn ids(page: &Page<(i64, String)>) -> Vec<&str> {
        page.items.iter().map(|(_, id)| id.as_str()).collect()
    }

    #[test]
    fn pages_follow_each_other_newest_first() {
        let items: Vec<(i64, String)> = [(1, "a"), (2, "b"), (2, "c"), (3, "d")]
            .into_iter()
            .map(|(at, id)| (at, id.to_string()))
            .collect();
        let first = newest_first(items.clone(), &Before::parse(None).unwrap(), 2, key);
        assert_eq!(ids(&first), ["d", "c"]);
        let cursor = first.next_cursor.clone().unwrap();
        let second = newest_first(items, &Before::parse(Some(&cursor)).unwrap(), 2, key);
        assert_eq!(ids(&second), ["b", "a"]);
        assert_eq!(second.next_cursor, None);
    }

    #[test]
    fn a_cursor_not_given_out_is_refused() {
        for foreign in ["not-a-cursor", "", "x.y", ".7"] {
            assert!(
                matches!(Before::parse(Some(foreign)), Err(Error::InvalidCursor)),
                "{foreign}"
            );
        }
    }
}
