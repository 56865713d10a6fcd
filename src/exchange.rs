//! The protocol every exchange between ranks follows, on top of a [`Collective`]'s plain
//! all-gather: a status header first, so that no rank can be left waiting by another.
//!
//! Each exchange is two all-gathers. The header `[status, length]` always has the same length,
//! so a rank whose own work failed (a bad file, an allocation, a GPU error) can take part in
//! whatever exchange the others are in: it sends "failed" and its message, and every rank
//! returns an error instead of waiting for a payload that never comes. The lengths in the
//! header let the payload round pad to the longest (a transport needs equal lengths) and let
//! an exchange refuse unequal payloads on every rank alike.
//!
//! [`Exchange::agree`] is the contract check before the first exchange of values: each rank
//! names what it is about to do (named fields: channels, epochs, each layer...), the ranks
//! compare fingerprints, and on a difference every rank returns the same
//! [`Error::RanksDisagree`] naming the field and each rank's value.

use std::fmt::Display;

use crate::collective::Collective;
use crate::error::{Error, Result};

/// Header status: this rank's part is ready.
const OK: f64 = 0.0;
/// Header status: this rank failed; its message follows instead of a payload.
const FAILED: f64 = 1.0;
/// Bytes of a failure message or a contract value that travel (the rest is cut).
const MAX_TEXT: usize = 1000;

/// One rank's side of a sequence of exchanges over `comm`.
pub struct Exchange<'a, C: Collective + ?Sized> {
    comm: &'a mut C,
    /// An exchange has failed: every rank knows (or the transport is broken), so nothing more
    /// is sent, and a later failure of this rank needs no announcing.
    settled: bool,
}

impl<'a, C: Collective + ?Sized> Exchange<'a, C> {
    /// Exchanges over `comm`.
    pub fn new(comm: &'a mut C) -> Self {
        Exchange {
            comm,
            settled: false,
        }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// How many ranks take part.
    pub fn ranks(&self) -> usize {
        self.comm.ranks()
    }

    /// Whether a failed exchange has already told every rank (see [`Exchange::fail`]).
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Every rank's payload in rank order (of any lengths). A local `Err` takes part as a
    /// failure: this rank gets it back, the others an [`Error::Collective`] naming it.
    pub fn gather<E: From<Error> + Display>(
        &mut self,
        local: Result<Vec<f64>, E>,
    ) -> Result<Vec<Vec<f64>>, E> {
        self.run(local, false)
    }

    /// As [`Exchange::gather`], every payload the same length: unequal ones are an error on
    /// every rank (before any payload is sent).
    pub fn gather_equal<E: From<Error> + Display>(
        &mut self,
        local: Result<Vec<f64>, E>,
    ) -> Result<Vec<Vec<f64>>, E> {
        self.run(local, true)
    }

    /// Takes part in the exchange the others are in as a rank that failed with `e` (unless an
    /// exchange already failed: then every rank knows), and returns `e`.
    pub fn fail<E: From<Error> + Display>(&mut self, e: E) -> E {
        match self.run(Err::<Vec<f64>, E>(e), false) {
            Err(e) => e,
            Ok(_) => Error::Collective("internal: a failed exchange succeeded".into()).into(),
        }
    }

    fn run<E: From<Error> + Display>(
        &mut self,
        local: Result<Vec<f64>, E>,
        equal: bool,
    ) -> Result<Vec<Vec<f64>>, E> {
        if self.settled {
            return Err(local.err().unwrap_or_else(|| {
                Error::Collective("an earlier exchange between the ranks failed".into()).into()
            }));
        }
        // Settled unless this exchange succeeds on every rank.
        self.settled = true;
        let message = local.as_ref().err().map(|e| text(&e.to_string()));
        let header = match (&local, &message) {
            (Ok(p), _) => [OK, p.len() as f64],
            (Err(_), Some(m)) => [FAILED, m.len() as f64],
            (Err(_), None) => [FAILED, 0.0],
        };
        let headers = self.comm.all_gather(&header)?;
        let headers: Vec<(f64, usize)> = headers
            .chunks_exact(2)
            .map(|h| (h[0], h[1] as usize))
            .collect();
        if headers.len() != self.ranks() {
            return Err(Error::Collective("a rank sent a malformed header".into()).into());
        }
        if headers.iter().any(|&(s, _)| s != OK) {
            // Every rank sends the failure messages (the ok ones pad), and this rank returns
            // its own failure, or the first failing rank's.
            let longest = headers
                .iter()
                .filter(|h| h.0 != OK)
                .map(|h| h.1)
                .max()
                .unwrap_or(0);
            let mine = message.unwrap_or_default();
            let texts = self.padded(&mine, &headers, longest)?;
            local?;
            let (r, m) = headers
                .iter()
                .zip(&texts)
                .enumerate()
                .find(|(_, (h, _))| h.0 != OK)
                .map(|(r, (_, t))| (r, untext(t)))
                .unwrap_or_default();
            return Err(Error::Collective(format!("rank {r} failed: {m}")).into());
        }
        let payload = local?;
        if equal && headers.iter().any(|h| h.1 != payload.len()) {
            let lengths: Vec<String> = headers
                .iter()
                .enumerate()
                .map(|(r, h)| format!("rank {r} sends {} values", h.1))
                .collect();
            return Err(Error::Collective(format!(
                "ranks exchange payloads of different lengths: {}",
                lengths.join(", ")
            ))
            .into());
        }
        let longest = headers.iter().map(|h| h.1).max().unwrap_or(0);
        let all = self.padded(&payload, &headers, longest)?;
        self.settled = false;
        Ok(all)
    }

    /// All-gathers `mine` padded to `longest`, and cuts each rank's back to its header's length.
    fn padded(
        &mut self,
        mine: &[f64],
        headers: &[(f64, usize)],
        longest: usize,
    ) -> Result<Vec<Vec<f64>>> {
        let mut sent = mine.to_vec();
        sent.resize(longest, 0.0);
        let all = self.comm.all_gather(&sent)?;
        if all.len() != longest * headers.len() {
            return Err(Error::Collective("a rank sent a malformed payload".into()));
        }
        Ok(headers
            .iter()
            .enumerate()
            .map(|(r, h)| all[r * longest..][..h.1.min(longest)].to_vec())
            .collect())
    }

    /// The contract check: every rank names what it is about to do in `fields` (name, value;
    /// the same names in the same order on every rank). Returns `Ok` when every rank has the
    /// same fields; otherwise every rank returns the same [`Error::RanksDisagree`] for the
    /// first field that differs. A local `Err` takes part as a failure (see
    /// [`Exchange::gather`]).
    pub fn agree<E: From<Error> + Display>(
        &mut self,
        fields: Result<Vec<(String, String)>, E>,
    ) -> Result<(), E> {
        let fields = match fields {
            Ok(f) => f,
            Err(e) => return Err(self.fail(e)),
        };
        // Round one: a fingerprint of each field (two exact 32-bit halves).
        let prints: Vec<f64> = fields
            .iter()
            .flat_map(|(name, value)| {
                let h = fingerprint([name.as_bytes(), b"\0", value.as_bytes()].concat());
                [(h >> 32) as f64, (h & 0xffff_ffff) as f64]
            })
            .collect();
        let all = self.gather(Ok::<_, E>(prints))?;
        let count = all.iter().map(Vec::len).max().unwrap_or(0) / 2;
        let Some(i) = (0..count).find(|&i| {
            let mine = all[0].get(2 * i..2 * i + 2);
            all.iter().any(|r| r.get(2 * i..2 * i + 2) != mine)
        }) else {
            return Ok(());
        };
        // Round two, only on a difference (every rank found the same one): each rank's text
        // of that field, so the error can name every rank's value.
        let mine = fields
            .get(i)
            .map_or_else(|| "\0(nothing)".to_string(), |(n, v)| format!("{n}\0{v}"));
        let texts = self.gather(Ok::<_, E>(text(&mine)))?;
        let named: Vec<(String, String)> = texts
            .iter()
            .map(|t| {
                let t = untext(t);
                match t.split_once('\0') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None => (String::new(), t),
                }
            })
            .collect();
        let what = named
            .iter()
            .map(|(n, _)| n.clone())
            .find(|n| !n.is_empty())
            .unwrap_or_else(|| format!("field {i}"));
        let same_names = named.iter().all(|(n, _)| *n == what);
        let values: Vec<String> = named
            .iter()
            .enumerate()
            .map(|(r, (n, v))| match same_names {
                true => format!("rank {r} has {v}"),
                false => format!("rank {r} has {n} {v}"),
            })
            .collect();
        // Every rank knows; nothing more is exchanged.
        self.settled = true;
        Err(Error::RanksDisagree {
            what,
            values: values.join(", "),
        }
        .into())
    }
}

/// A message as exchanged values: its bytes, one per f64 (cut at `MAX_TEXT`).
fn text(s: &str) -> Vec<f64> {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.as_bytes()[..end].iter().map(|&b| b as f64).collect()
}

fn untext(v: &[f64]) -> String {
    let bytes: Vec<u8> = v.iter().map(|&b| b as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// FNV-1a over 64-bit words (the tail zero-padded): a fingerprint that is the same on every
/// machine and build (std's hashers promise neither), fast enough for a whole data set.
pub(crate) fn fingerprint(bytes: impl AsRef<[u8]>) -> u64 {
    let bytes = bytes.as_ref();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(0x0000_0100_0000_01b3);
    h ^ (h >> 32)
}
