//! Secrets given to the node (API tokens): compared in constant time, so
//! that the time a refusal takes says nothing about how much was right.

/// Does `given` equal the node's `token`? Constant time in the token's
/// length (a length mismatch is refused at once: lengths are not secret).
pub fn token_matches(given: &str, token: &str) -> bool {
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3creT", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("", "s3cret"));
    }
}
