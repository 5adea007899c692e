//! Simulated embeddings by feature hashing, and reranking by their cosine.
//!
//! Each text contributes its lowercase word unigrams and the character trigrams of each
//! padded word, hashed with 64-bit FNV-1a into signed buckets of an L2-normalised
//! vector. Texts that share words or word pieces therefore land measurably closer,
//! and the same text always gives the same vector on every platform.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = FNV_OFFSET;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

fn add_feature(vector: &mut [f32], kind: &[u8], feature: &[u8], weight: f32) {
    let hash = fnv1a(&[kind, feature]);
    let bucket = (hash % vector.len() as u64) as usize;
    let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
    vector[bucket] += sign * weight;
}

/// The lowercase words of a text.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The embedding of `text` with `dim` components (at least 1), unit length.
pub(crate) fn embed(text: &str, dim: usize) -> Vec<f32> {
    let dim = dim.max(1);
    let mut vector = vec![0.0f32; dim];
    for word in words(text) {
        add_feature(&mut vector, b"w:", word.as_bytes(), 1.0);
        let padded: Vec<char> = format!(" {word} ").chars().collect();
        for gram in padded.windows(3) {
            let gram: String = gram.iter().collect();
            add_feature(&mut vector, b"c:", gram.as_bytes(), 0.5);
        }
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    } else {
        // An empty text still gets a valid unit vector, the same one every time.
        vector[0] = 1.0;
    }
    vector
}

/// Token count used in usage figures: one per word.
pub(crate) fn count_tokens(text: &str) -> u64 {
    words(text).count() as u64
}

pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    // Both are unit vectors, so the dot product is the cosine.
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Indices and scores of `documents`, best match for `query` first (ties keep input
/// order), at most `top_n`.
pub(crate) fn rerank(
    query: &str,
    documents: &[String],
    top_n: Option<usize>,
    dim: usize,
) -> Vec<(usize, f64)> {
    let q = embed(query, dim);
    let mut scored: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| (i, cosine(&q, &embed(d, dim))))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = top_n {
        scored.truncate(n);
    }
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_length_and_stable() {
        let v = embed("refund policy", 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v, embed("refund policy", 384));
        assert_eq!(embed("", 8)[0], 1.0);
    }

    #[test]
    fn shared_words_are_closer() {
        let q = embed("how do I rotate a key", 384);
        let near = embed("Rotation revokes the old key.", 384);
        let far = embed("Our office is in Lyon.", 384);
        assert!(cosine(&q, &near) > cosine(&q, &far));
    }

    #[test]
    fn rerank_sorted_and_cut() {
        let docs = vec![
            "Keys are rotated from Settings.".to_owned(),
            "Our office is in Lyon.".to_owned(),
            "Rotate a key to revoke the old key.".to_owned(),
        ];
        let r = rerank("how do I rotate a key", &docs, Some(2), 384);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, 2);
        assert!(r[0].1 >= r[1].1);
        assert!(r.iter().all(|(i, _)| *i != 1));
    }
}
