//! The one rule for free text that other clients display — collab participant ids and names,
//! dish names and types, customizations, circle ids, phones and the shown tenant id; POS
//! customer and item names; device locations: it never carries markup. Text holding `<` or `>`
//! is refused (`VALIDATION_ERROR`), never rewritten, so what a client sent is either what every
//! other client shows or refused back to its sender. Used by the collab handler,
//! [`crate::pos::OrderInput::check`] and [`crate::device::check_scan`].

/// Checks that `text`, the value of `field`, holds no markup: no `<` and no `>` (a browser
/// starts a tag only at `<`; `>` goes too, so text cut or joined later cannot close one). The
/// error names the field.
pub fn check_no_markup(field: &str, text: &str) -> Result<(), String> {
    if text.contains(['<', '>']) {
        Err(format!(
            "{field} must not contain markup: \"<\" and \">\" are refused"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_refused_and_plain_text_passes() {
        for plain in [
            "Chicken Biryani",
            "Fish & Chips",
            "Main Gate 3",
            "Ünïcode ‹ok›",
            "",
        ] {
            assert_eq!(check_no_markup("dishName", plain), Ok(()), "{plain}");
        }
        for marked in [
            "<img src=x onerror=\"alert(1)\">Biryani",
            "<script>alert(1)</script>",
            "a < b",
            "b > a",
            "Biryani<",
        ] {
            let why = check_no_markup("dishName", marked).expect_err(marked);
            assert!(why.starts_with("dishName "), "{why}");
        }
    }
}
