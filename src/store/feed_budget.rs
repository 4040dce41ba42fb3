//! A feed page's byte budget (SPEC §8 bounds a page by `limit` items; this
//! bounds it by bytes too). A page first reads only its items' sizes, then
//! the bodies of as many as fit, so a reader of large events — or one that
//! never reads its answer, or a stream's slow client — holds a few MiB of
//! the server's memory, not `limit` times the largest envelope.

/// The most envelope bytes one page carries (at least one item, whatever
/// its size): a page is bounded by bytes as well as by `limit`, so that a
/// reader of large events — or one that never reads its answer — holds a
/// few MiB of the server's memory, not `limit` times the largest payload.
pub const MAX_PAGE_BYTES: i64 = 4 * 1024 * 1024;

/// The page statement with only each item's size selected: how many of the
/// page's items fit in [`MAX_PAGE_BYTES`], read before their bodies are.
pub(super) fn sizes_of(page: &str) -> String {
    page.replacen(
        "SELECT xid, id, source, action, body FROM",
        "SELECT CAST(octet_length(body) AS BIGINT) FROM",
        1,
    )
}

/// How many of the leading items (their sizes in order) fit in `budget`
/// bytes; at least one, so that a page always moves on.
pub fn items_within(sizes: &[i64], budget: i64) -> usize {
    let mut total = 0_i64;
    let mut fit = 0;
    for &size in sizes {
        total = total.saturating_add(size);
        if fit > 0 && total > budget {
            break;
        }
        fit += 1;
    }
    fit
}

/// The page's `limit` once its items' sizes are known (the same rows: both
/// statements read below the same horizon).
pub(super) fn fitting(sizes: &[(i64,)]) -> i64 {
    let sizes: Vec<i64> = sizes.iter().map(|(n,)| *n).collect();
    i64::try_from(items_within(&sizes, MAX_PAGE_BYTES)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_takes_items_while_they_fit_and_always_at_least_one() {
        assert_eq!(items_within(&[], 10), 0);
        assert_eq!(
            items_within(&[50], 10),
            1,
            "one item larger than the budget"
        );
        assert_eq!(items_within(&[4, 4, 2, 1], 10), 3);
        assert_eq!(items_within(&[4, 4, 3], 10), 2);
        assert_eq!(items_within(&[1; 5], 10), 5);
        assert_eq!(items_within(&[i64::MAX, i64::MAX], 10), 1);
    }

    #[test]
    fn the_sizes_statement_is_the_page_statement_selecting_sizes() {
        let page = "SELECT xid, id, source, action, body FROM feed_items WHERE id > $1 LIMIT $2";
        assert_eq!(
            sizes_of(page),
            "SELECT CAST(octet_length(body) AS BIGINT) FROM feed_items WHERE id > $1 LIMIT $2"
        );
    }
}
