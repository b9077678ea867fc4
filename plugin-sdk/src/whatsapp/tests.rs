//! Every message type of the reference, statuses, errors and contacts: typed access, and a
//! lossless round trip.

use serde_json::{Value, json};

use super::*;

/// Parse `value` as `T`, serialise it again, and require the same JSON.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).expect("parses");
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        value,
        "round trip changed the JSON"
    );
    typed
}

fn message(value: Value) -> Message {
    let m: Message = roundtrip(&value);
    let body = json!({ "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "5511987650001" }], "messages": [value] });
    roundtrip::<WebhookBody>(&body);
    m
}

fn base(kind: &str, payload: Value) -> Value {
    let mut m = json!({ "from": "5511987650001", "id": "ABEGVRGYdlABAgo-x", "timestamp": "1736330400", "type": kind });
    if !payload.is_null() {
        m[kind] = payload;
    }
    m
}

#[test]
fn text() {
    let m = message(base("text", json!({ "body": "Hi" })));
    assert!(matches!(m.content(), Content::Text(t) if t.body.as_deref() == Some("Hi")));
    assert_eq!(m.text_content(), Some("Hi"));
    assert_eq!(
        (m.id.as_str(), m.from.as_str(), m.timestamp.as_str()),
        ("ABEGVRGYdlABAgo-x", "5511987650001", "1736330400")
    );
}

#[test]
fn image_video_document_with_captions() {
    for kind in ["image", "video", "document"] {
        let m = message(base(
            kind,
            json!({ "id": "m1", "mime_type": "image/jpeg", "sha256": "abc", "caption": "Look", "file": "/usr/local/wamedia/x", "link": "https://x", "filename": "a.pdf" }),
        ));
        assert_eq!(m.text_content(), Some("Look"), "{kind}");
        let media = match m.content() {
            Content::Image(x) | Content::Video(x) | Content::Document(x) => x,
            other => panic!("{kind}: {other:?}"),
        };
        assert_eq!(
            (media.id.as_str(), media.file.as_deref()),
            ("m1", Some("/usr/local/wamedia/x"))
        );
    }
}

#[test]
fn audio_and_voice() {
    let m = message(base(
        "audio",
        json!({ "id": "a1", "mime_type": "audio/mpeg", "sha256": "s", "filename": "x.mp3" }),
    ));
    assert!(matches!(m.content(), Content::Audio(a) if a.filename.as_deref() == Some("x.mp3")));
    assert!(!m.is_voice());
    let m = message(base(
        "voice",
        json!({ "id": "v1", "mime_type": "audio/ogg; codecs=opus", "sha256": "s", "file": "/f" }),
    ));
    assert!(
        matches!(m.content(), Content::Voice(v) if v.mime_type.as_deref() == Some("audio/ogg; codecs=opus"))
    );
    assert!(m.is_voice());
    let cloud_voice = message(base(
        "audio",
        json!({ "id": "a2", "mime_type": "audio/ogg", "voice": true }),
    ));
    assert!(cloud_voice.is_voice());
    assert_eq!(cloud_voice.text_content(), None);
}

#[test]
fn sticker_with_hyphenated_metadata() {
    let m = message(base(
        "sticker",
        json!({ "id": "s1", "mime_type": "image/webp", "sha256": "h", "metadata": {
            "sticker-pack-id": "p1", "sticker-pack-name": "Cats", "sticker-pack-publisher": "Me",
            "emojis": ["😺"], "ios-app-store-link": "https://apple", "android-app-store-link": "https://play",
            "is-first-party-sticker": 0 }, "animated": false }),
    ));
    let Content::Sticker(s) = m.content() else {
        panic!("{:?}", m.content())
    };
    let meta = s.metadata.as_ref().unwrap();
    assert_eq!(meta.sticker_pack_name.as_deref(), Some("Cats"));
    assert_eq!(meta.emojis.as_deref(), Some(&["😺".to_string()][..]));
    assert_eq!(meta.is_first_party_sticker, Some(0));
    assert_eq!(
        s.extra["animated"], false,
        "unmodelled sticker fields are kept"
    );
}

#[test]
fn location() {
    let m = message(base(
        "location",
        json!({ "latitude": -23.5613, "longitude": -46.6565, "name": "Store", "address": "Av. Paulista", "url": "https://maps" }),
    ));
    let Content::Location(l) = m.content() else {
        panic!()
    };
    assert_eq!(
        (l.latitude, l.longitude, l.name.as_deref()),
        (Some(-23.5613), Some(-46.6565), Some("Store"))
    );
    assert_eq!(m.text_content(), None);
}

#[test]
fn contacts_vcard() {
    let m = message(base(
        "contacts",
        json!([{
            "addresses": [{ "city": "Menlo Park", "country": "United States", "country_code": "us", "state": "CA", "street": "1 Hacker Way", "type": "HOME", "zip": "94025" }],
            "birthday": "2012-08-18",
            "contact_image": "/9j/4AAQSkZJRgABAQEAZABkAAD/2wBDAAgGBgcGBQgHBwcJCQ",
            "emails": [{ "email": "kfish@fb.com", "type": "WORK" }],
            "ims": [{ "service": "AIM", "user_id": "kfish" }],
            "name": { "first_name": "Kerry", "formatted_name": "Kerry Fisher", "last_name": "Fisher", "middle_name": "M" },
            "org": { "company": "Facebook", "department": "Design", "title": "Manager" },
            "phones": [{ "phone": "+1 (940) 555-1234", "type": "HOME" }, { "phone": "+1 (650) 555-1234", "type": "WORK", "wa_id": "16505551234" }],
            "urls": [{ "url": "https://www.facebook.com", "type": "WORK" }]
        }]),
    ));
    let Content::Contacts(cards) = m.content() else {
        panic!()
    };
    let card = &cards[0];
    assert_eq!(
        card.name.as_ref().unwrap().formatted_name.as_deref(),
        Some("Kerry Fisher")
    );
    assert_eq!(card.name.as_ref().unwrap().extra["middle_name"], "M");
    assert_eq!(
        card.phones.as_ref().unwrap()[1].wa_id.as_deref(),
        Some("16505551234")
    );
    assert_eq!(
        card.addresses.as_ref().unwrap()[0].kind.as_deref(),
        Some("HOME")
    );
    assert_eq!(
        card.org.as_ref().unwrap().company.as_deref(),
        Some("Facebook")
    );
    assert_eq!(
        card.ims.as_ref().unwrap()[0].user_id.as_deref(),
        Some("kfish")
    );
    assert_eq!(
        card.emails.as_ref().unwrap()[0].email.as_deref(),
        Some("kfish@fb.com")
    );
    assert_eq!(
        card.urls.as_ref().unwrap()[0].url.as_deref(),
        Some("https://www.facebook.com")
    );
}

#[test]
fn interactive_button_and_list_replies() {
    let mut b = base(
        "interactive",
        json!({ "type": "button_reply", "button_reply": { "id": "yes", "title": "Yes, confirm" } }),
    );
    b["context"] = json!({ "from": "5511300000000", "id": "gBEG-1" });
    let m = message(b);
    assert_eq!(m.text_content(), Some("Yes, confirm"));
    assert_eq!(m.context.as_ref().unwrap().id.as_deref(), Some("gBEG-1"));
    let m = message(base(
        "interactive",
        json!({ "type": "list_reply", "list_reply": { "id": "row-2", "title": "Tuesday", "description": "10:00-12:00" } }),
    ));
    let Content::Interactive(i) = m.content() else {
        panic!()
    };
    assert_eq!(i.kind, "list_reply");
    assert_eq!(
        i.list_reply.as_ref().unwrap().description.as_deref(),
        Some("10:00-12:00")
    );
    assert_eq!(m.text_content(), Some("Tuesday"));
}

#[test]
fn template_button() {
    let mut b = base(
        "button",
        json!({ "text": "Stop promotions", "payload": "STOP" }),
    );
    b["context"] = json!({ "from": "5511300000000", "id": "gBEG-2" });
    let m = message(b);
    assert!(matches!(m.content(), Content::Button(b) if b.payload.as_deref() == Some("STOP")));
    assert_eq!(m.text_content(), Some("Stop promotions"));
}

#[test]
fn order() {
    let m = message(base(
        "order",
        json!({ "catalog_id": "cat-1", "text": "please deliver", "product_items": [
            { "product_retailer_id": "sku-1", "quantity": 2, "item_price": 10.5, "currency": "BRL" },
            { "product_retailer_id": "sku-2", "quantity": "1", "item_price": "3", "currency": "BRL" } ] }),
    ));
    let Content::Order(o) = m.content() else {
        panic!()
    };
    assert_eq!(o.catalog_id, "cat-1");
    let items = o.product_items.as_ref().unwrap();
    assert_eq!(
        (items[0].quantity.clone(), items[1].quantity.clone()),
        (Some(json!(2)), Some(json!("1")))
    );
}

#[test]
fn reaction_set_and_removed() {
    let m = message(base(
        "reaction",
        json!({ "message_id": "gBEG-3", "emoji": "👍" }),
    ));
    assert!(matches!(m.content(), Content::Reaction(r) if r.emoji.as_deref() == Some("👍")));
    let m = message(base("reaction", json!({ "message_id": "gBEG-3" })));
    assert!(matches!(m.content(), Content::Reaction(r) if r.emoji.is_none()));
}

#[test]
fn system_in_every_spelling() {
    let cases = [
        (
            json!({ "body": "User A changed from 1 to 2", "type": "user_changed_number", "new_wa_id": "2" }),
            Some("2"),
        ),
        (
            json!({ "body": "Customer changed", "type": "customer_changed_number", "wa_id": "3", "customer": "1" }),
            Some("3"),
        ),
        (
            json!({ "body": "Identity changed", "type": "customer_identity_changed", "identity": "h1", "customer": "1" }),
            None,
        ),
        (
            json!({ "type": "user_identity_changed", "identity": "h2", "user": "1" }),
            None,
        ),
        (
            json!({ "body": "created", "type": "group_created", "group_id": "g", "operator": "1", "users": ["1", "2"] }),
            None,
        ),
    ];
    for (payload, changed_to) in cases {
        let m = message(base("system", payload.clone()));
        let Content::System(s) = m.content() else {
            panic!()
        };
        assert_eq!(s.kind.as_deref(), payload["type"].as_str());
        assert_eq!(s.changed_to(), changed_to);
    }
}

#[test]
fn unknown_and_unsupported_keep_their_errors() {
    let mut b = base("unknown", Value::Null);
    b["errors"] = json!([{ "code": 501, "title": "Unknown message type", "details": "Message type is not currently supported" }]);
    let m = message(b);
    assert_eq!(m.content(), Content::Unknown);
    assert_eq!(m.errors.as_ref().unwrap()[0].code, 501);
    let mut b = base("unsupported", Value::Null);
    b["errors"] = json!([{ "code": 131051, "title": "Message type unknown", "message": "Message type unknown", "error_data": { "details": "x" } }]);
    let m = message(b);
    assert_eq!(m.content(), Content::Unknown);
    assert_eq!(
        m.errors.as_ref().unwrap()[0].error_data,
        Some(json!({ "details": "x" }))
    );
}

#[test]
fn ephemeral() {
    let m = message(base("ephemeral", Value::Null));
    assert_eq!(m.content(), Content::Ephemeral);
    let m = message(base("ephemeral", json!({ "expiration": 86400 })));
    assert_eq!(m.ephemeral, Some(json!({ "expiration": 86400 })));
}

#[test]
fn a_type_not_known_yet_survives_with_its_payload() {
    let m = message(base(
        "hologram",
        json!({ "frames": [1, 2], "nested": { "deep": true } }),
    ));
    assert_eq!(m.content(), Content::Other { kind: "hologram" });
    assert_eq!(m.extra["hologram"]["nested"]["deep"], true);
}

#[test]
fn context_identity_and_referral() {
    let mut b = base("text", json!({ "body": "about this product" }));
    b["context"] = json!({ "from": "1", "id": "gBEG-4", "forwarded": true, "frequently_forwarded": false, "group_id": "g",
        "mentions": ["1"], "referred_product": { "catalog_id": "c", "product_retailer_id": "p" } });
    b["identity"] = json!({ "acknowledged": true, "created_timestamp": 1602532300000i64, "hash": "Sjvjlx8G6Z0=" });
    b["referral"] = json!({ "source_url": "https://fb.me/x", "source_id": "ad-1", "source_type": "ad", "headline": "Sale",
        "body": "50% off", "image": { "id": "img-1" }, "ctwa_clid": "clid-1" });
    b["group_id"] = json!("legacy-group");
    let m = message(b);
    let c = m.context.as_ref().unwrap();
    assert_eq!(
        (c.forwarded, c.frequently_forwarded),
        (Some(true), Some(false))
    );
    assert_eq!(
        c.referred_product.as_ref().unwrap().product_retailer_id,
        "p"
    );
    let i = m.identity.as_ref().unwrap();
    assert_eq!(i.created_timestamp, Some(1602532300000));
    let r = m.referral.as_ref().unwrap();
    assert_eq!(
        (
            r.source_type.as_deref(),
            r.image.as_ref().map(|i| i.id.as_str())
        ),
        (Some("ad"), Some("img-1"))
    );
    assert_eq!(r.ctwa_clid.as_deref(), Some("clid-1"));
    assert_eq!(m.group_id.as_deref(), Some("legacy-group"));
}

fn status(value: Value) -> Status {
    let s: Status = roundtrip(&value);
    roundtrip::<WebhookBody>(&json!({ "statuses": [value] }));
    s
}

#[test]
fn statuses_of_every_kind() {
    let cases = [
        ("sent", StatusState::Sent),
        ("delivered", StatusState::Delivered),
        ("read", StatusState::Read),
        ("failed", StatusState::Failed),
        ("deleted", StatusState::Deleted),
        ("warning", StatusState::Warning),
        ("sending", StatusState::Other("sending")),
    ];
    for (name, state) in cases {
        let s = status(
            json!({ "id": "gBEG-5", "recipient_id": "5511987650001", "status": name, "timestamp": "1736331300" }),
        );
        assert_eq!(s.state(), state);
        assert_eq!(s.recipient(), Some("5511987650001"));
    }
}

#[test]
fn status_with_conversation_and_pricing() {
    let s = status(
        json!({ "id": "gBEG-6", "recipient_id": "1", "status": "sent", "timestamp": "1", "type": "message",
        "conversation": { "id": "conv-1", "expiration_timestamp": 1736417700, "origin": { "type": "service" } },
        "pricing": { "billable": true, "pricing_model": "CBP", "category": "service" },
        "biz_opaque_callback_data": "tracking-1" }),
    );
    let c = s.conversation.as_ref().unwrap();
    assert_eq!(
        c.expiration_timestamp.as_ref().unwrap().seconds(),
        Some(1736417700)
    );
    assert_eq!(c.origin.as_ref().unwrap().kind, "service");
    let p = s.pricing.as_ref().unwrap();
    assert_eq!(
        (
            p.billable,
            p.pricing_model.as_deref(),
            p.category.as_deref()
        ),
        (Some(true), Some("CBP"), Some("service"))
    );
    assert_eq!(s.kind.as_deref(), Some("message"));
    assert_eq!(s.biz_opaque_callback_data.as_deref(), Some("tracking-1"));
    let s = status(
        json!({ "id": "x", "recipient_id": "1", "status": "sent", "timestamp": "1",
        "conversation": { "id": "conv-2", "expiration_timestamp": "1736417700" } }),
    );
    let e = s
        .conversation
        .as_ref()
        .unwrap()
        .expiration_timestamp
        .as_ref()
        .unwrap();
    assert_eq!(
        (e, e.seconds()),
        (
            &ExpirationTimestamp::Text("1736417700".into()),
            Some(1736417700)
        )
    );
}

#[test]
fn status_recipient_in_either_place() {
    let s = status(
        json!({ "id": "x", "message": { "recipient_id": "5511987650003" }, "status": "read", "timestamp": "1" }),
    );
    assert_eq!(s.recipient(), Some("5511987650003"));
    let s = status(json!({ "id": "x", "status": "read", "timestamp": "1" }));
    assert_eq!(s.recipient(), None);
}

#[test]
fn failed_status_with_errors() {
    let s = status(
        json!({ "id": "x", "recipient_id": "1", "status": "failed", "timestamp": "1",
        "errors": [{ "code": 470, "title": "Re-engagement message" }] }),
    );
    assert_eq!(s.errors.as_ref().unwrap()[0].code, 470);
}

#[test]
fn top_level_errors_and_contacts() {
    let body: WebhookBody = roundtrip(
        &json!({ "errors": [{ "code": 400, "title": "Media download error", "details": "d", "href": "h" }] }),
    );
    let e = &body.errors[0];
    assert_eq!(
        (e.code, e.details.as_deref(), e.href.as_deref()),
        (400, Some("d"), Some("h"))
    );
    let body: WebhookBody = roundtrip(
        &json!({ "contacts": [{ "wa_id": "1", "profile": { "name": "Bo" }, "identity_key_hash": "k" }] }),
    );
    assert_eq!(
        body.contacts[0].profile.as_ref().unwrap().name.as_deref(),
        Some("Bo")
    );
    assert_eq!(body.contacts[0].extra["identity_key_hash"], "k");
    let no_profile: WebhookBody = roundtrip(&json!({ "contacts": [{ "wa_id": "2" }] }));
    assert!(no_profile.contacts[0].profile.is_none());
}

#[test]
fn unknown_fields_survive_at_every_level() {
    roundtrip::<WebhookBody>(&json!({
        "new_array": [1],
        "contacts": [{ "wa_id": "1", "profile": { "name": "A", "pic": "p" }, "x": 1 }],
        "messages": [{ "from": "1", "id": "i", "timestamp": "1", "type": "text", "text": { "body": "b", "lang": "en" },
            "context": { "id": "c", "extra_ctx": [] }, "brand_new": { "a": null } }],
        "statuses": [{ "id": "s", "status": "read", "timestamp": "1", "recipient_id": "1",
            "conversation": { "id": "c", "origin": { "type": "service", "o": 1 }, "z": 2 }, "pricing": { "billable": false, "p": 3 }, "q": "r" }],
        "errors": [{ "code": 1, "title": "t", "new": true }]
    }));
}

/// The bodies of `tests/fixtures/{api}/`, by file name.
fn fixtures(api: &str) -> Vec<(String, Value)> {
    let dir = format!("{}/../tests/fixtures/{api}", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() > 20, "{dir} holds {} fixtures", out.len());
    out
}

#[test]
fn fixtures_parse_and_round_trip() {
    let has_items =
        |b: &WebhookBody| !(b.messages.is_empty() && b.statuses.is_empty() && b.errors.is_empty());
    for (_, value) in fixtures("onprem") {
        assert!(has_items(&roundtrip::<WebhookBody>(&value)));
    }
    for (name, value) in fixtures("cloud") {
        let env: CloudEnvelope = roundtrip(&value);
        assert!(
            env.entry
                .iter()
                .flat_map(|e| &e.changes)
                .any(|c| has_items(&c.value.body)),
            "{name}"
        );
    }
}

#[test]
fn every_message_type_of_the_fixtures_has_its_payload() {
    let onprem = fixtures("onprem").into_iter().map(|(_, v)| v);
    let cloud = fixtures("cloud")
        .into_iter()
        .flat_map(|(_, v)| serde_json::from_value::<CloudEnvelope>(v).unwrap().entry)
        .flat_map(|e| e.changes)
        .map(|c| serde_json::to_value(c.value.body).unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for body in onprem.chain(cloud) {
        let body: WebhookBody = serde_json::from_value(body).unwrap();
        for m in &body.messages {
            seen.insert(m.kind.clone());
            let payload_less = ["unknown", "unsupported", "ephemeral"].contains(&m.kind.as_str());
            assert!(
                !matches!(m.content(), Content::Other { .. }),
                "{} has no payload",
                m.id
            );
            assert_eq!(
                payload_less,
                matches!(m.content(), Content::Unknown | Content::Ephemeral)
            );
        }
    }
    let all = [
        "text",
        "image",
        "video",
        "audio",
        "voice",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "button",
        "order",
        "system",
        "unknown",
        "unsupported",
        "ephemeral",
        "reaction",
    ];
    assert_eq!(
        seen,
        all.iter().map(|s| s.to_string()).collect(),
        "the types of the reference"
    );
}

#[test]
fn cloud_envelope() {
    let env: CloudEnvelope = roundtrip(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": "Kerry" }, "wa_id": "16315551181" }],
            "messages": [{ "from": "16315551181", "id": "wamid.1", "timestamp": "1", "type": "text", "text": { "body": "hi" } }],
            "statuses": [{ "id": "wamid.2", "status": "delivered", "timestamp": "1", "recipient_id": "1", "biz_opaque_callback_data": "x" }]
        } }] }]
    }));
    let value = &env.entry[0].changes[0].value;
    assert_eq!(
        value.metadata.as_ref().unwrap().phone_number_id.as_deref(),
        Some("106540352242922")
    );
    assert_eq!(value.body.messages[0].text_content(), Some("hi"));
    assert_eq!(value.body.statuses[0].state(), StatusState::Delivered);
}

#[test]
fn a_field_of_an_unexpected_type_reads_as_absent_and_costs_nothing_else() {
    let m: Message = serde_json::from_value(json!({
        "from": 5511987650001u64, "id": 42, "timestamp": 1736330400, "type": "location",
        "location": { "latitude": "n/a", "longitude": "-46.6565", "name": 7, "address": {}, "url": null },
        "context": "not an object", "errors": [{ "code": "470", "title": ["x"] }, 5],
        "identity": { "acknowledged": "true", "created_timestamp": "1736331000123", "hash": false },
        "referral": { "image": "x", "source_type": ["ad"] },
    }))
    .expect("never fails for a field");
    assert_eq!(
        (m.from.as_str(), m.id.as_str(), m.timestamp.as_str()),
        ("5511987650001", "42", "1736330400"),
        "ids and timestamps are read from numbers"
    );
    let Content::Location(l) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!(
        (
            l.latitude,
            l.longitude,
            l.name.as_deref(),
            l.address.as_deref(),
            l.url.as_deref()
        ),
        (None, Some(-46.6565), Some("7"), None, None)
    );
    assert!(m.context.is_none());
    let errors = m.errors.as_deref().unwrap();
    assert_eq!(errors.len(), 1, "the element that is no error is left out");
    assert_eq!((errors[0].code, errors[0].title.as_deref()), (470, None));
    let identity = m.identity.unwrap();
    assert_eq!(
        (
            identity.acknowledged,
            identity.created_timestamp,
            identity.hash
        ),
        (Some(true), Some(1736331000123), Some("false".into()))
    );
    let referral = m.referral.unwrap();
    assert!(referral.image.is_none() && referral.source_type.is_none());

    let s: Status = serde_json::from_value(json!({
        "id": "gBEG", "status": "read", "timestamp": "x", "recipient_id": 5511987650001u64,
        "conversation": { "id": 9, "expiration_timestamp": 1.5, "origin": "service" },
        "pricing": { "billable": 1, "pricing_model": null, "category": 3 },
    }))
    .unwrap();
    assert_eq!(
        (s.recipient(), s.state(), s.timestamp.as_str()),
        (Some("5511987650001"), StatusState::Read, "x")
    );
    let c = s.conversation.unwrap();
    assert_eq!(
        (c.id.as_str(), c.expiration_timestamp, c.origin),
        ("9", None, None)
    );
    let p = s.pricing.unwrap();
    assert_eq!(
        (p.billable, p.pricing_model, p.category.as_deref()),
        (None, None, Some("3"))
    );

    let body: WebhookBody = serde_json::from_value(json!({
        "contacts": [{ "wa_id": 1, "profile": "Ana" }, "x"],
        "messages": [{ "id": "a" }, null], "statuses": {}, "errors": [{ "code": 1.0e3 }]
    }))
    .unwrap();
    assert_eq!(
        (
            body.contacts.len(),
            body.contacts[0].wa_id.as_str(),
            body.messages.len()
        ),
        (1, "1", 1)
    );
    assert_eq!((body.statuses.len(), body.errors[0].code), (0, 1000));
}
