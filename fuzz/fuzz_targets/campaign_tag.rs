//! Campaign tag decoding: a tag arrives in a query parameter, a cookie or a header, from anyone.
//!
//! The first input byte picks where the rest goes. Properties: nothing panics; a tag's value is
//! at most 64 bytes, non-empty, trimmed, with no control character, or else exactly
//! `invalid`; what logs show of it (`raw`) is at most 64 bytes too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use seawall::campaign::{Campaigns, INVALID_TAG, MAX_TAG_LEN, read_tag};
use seawall::limits::KeySource;

fn campaigns() -> Campaigns {
    Campaigns {
        tag_sources: vec![
            KeySource::Query("utm_campaign".into()),
            KeySource::Cookie("utm_campaign".into()),
            KeySource::Header(http::HeaderName::from_static("x-campaign")),
        ],
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&place, value)) = data.split_first() else {
        return;
    };
    let mut path = b"/p?".to_vec();
    let mut cookie = None;
    let mut header = None;
    match place % 4 {
        0 => {
            path.extend_from_slice(b"a=1&utm_campaign=");
            path.extend_from_slice(value);
        }
        1 => cookie = Some([b"sid=1; utm_campaign=".as_slice(), value].concat()),
        2 => header = Some(value.to_vec()),
        _ => {
            // Every source at once: the query wins, and may be empty.
            path.extend_from_slice(b"utm_campaign=");
            path.extend_from_slice(value);
            cookie = Some([b"utm_campaign=".as_slice(), value].concat());
            header = Some(value.to_vec());
        }
    }
    // What the HTTP parser would refuse never reaches Seawall.
    let Ok(mut req) = RequestHeader::build("GET", &path, None) else {
        return;
    };
    for (name, v) in [("cookie", cookie), ("x-campaign", header)] {
        let Some(v) = v else { continue };
        let Ok(v) = http::HeaderValue::from_bytes(&v) else {
            return;
        };
        if req.append_header(name, v).is_err() {
            return;
        }
    }
    let Some(tag) = read_tag(&campaigns(), &req) else {
        return;
    };
    assert!(tag.raw.len() <= MAX_TAG_LEN, "raw {:?} is {} bytes", tag.raw, tag.raw.len());
    if tag.value != INVALID_TAG {
        let v = &tag.value;
        assert!(!v.is_empty() && v.len() <= MAX_TAG_LEN, "{v:?}");
        assert!(!v.chars().any(char::is_control), "{v:?}");
        assert_eq!(v.trim(), v);
    }
});
