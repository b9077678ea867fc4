use std::time::Duration;

use serde_json::{Value, json};

use super::*;

const TO: &str = "5511987650001";

fn x(n: usize) -> String {
    "x".repeat(n)
}

/// The error of a send built from `draft`.
fn error_of<M: Into<OutgoingMessage>>(draft: Draft<M>) -> Option<SendError> {
    draft.build().validate().err()
}

fn ok<M: Into<OutgoingMessage>>(draft: Draft<M>) {
    let send = draft.build();
    assert_eq!(send.validate(), Ok(()), "{send:?}");
}

fn too_long(field: &'static str, max: usize) -> Option<SendError> {
    Some(SendError::TooLong {
        field,
        max,
        got: max + 1,
    })
}

// ---- validation: every rule, at the limit and one over ----

#[test]
fn recipient_and_reply_to_are_required() {
    assert_eq!(
        error_of(Send::text("", "hi")),
        Some(SendError::Missing {
            field: "recipient (to)"
        })
    );
    assert_eq!(
        error_of(Send::text(TO, "hi").reply_to(" ")),
        Some(SendError::Missing {
            field: "reply-to message id"
        })
    );
    ok(Send::text(TO, "hi").reply_to("wamid.Q"));
}

#[test]
fn text_body_is_required_and_at_most_4096_characters() {
    ok(Send::text(TO, x(4096)));
    assert_eq!(
        error_of(Send::text(TO, x(4097))),
        too_long("text body", 4096)
    );
    assert_eq!(
        error_of(Send::text(TO, "")),
        Some(SendError::Missing { field: "text body" })
    );
    // Characters, not bytes: 4096 two-byte characters pass.
    ok(Send::text(TO, "é".repeat(4096)));
}

#[test]
fn buttons_are_one_to_three() {
    let three = Send::buttons(TO, "Pick")
        .button("a", "A")
        .button("b", "B")
        .button("c", "C");
    ok(three.clone());
    assert_eq!(
        error_of(three.button("d", "D")),
        Some(SendError::TooManyButtons { max: 3, got: 4 })
    );
    assert_eq!(
        error_of(Send::buttons(TO, "Pick")),
        Some(SendError::NoButtons)
    );
}

#[test]
fn button_title_and_id_lengths() {
    ok(Send::buttons(TO, "Pick").button(x(256), x(20)));
    assert_eq!(
        error_of(Send::buttons(TO, "Pick").button("a", x(21))),
        too_long("button title", 20)
    );
    assert_eq!(
        error_of(Send::buttons(TO, "Pick").button(x(257), "A")),
        too_long("button id", 256)
    );
    assert_eq!(
        error_of(Send::buttons(TO, "Pick").button("a", "")),
        Some(SendError::Missing {
            field: "button title"
        })
    );
    assert_eq!(
        error_of(Send::buttons(TO, "Pick").button("", "A")),
        Some(SendError::Missing { field: "button id" })
    );
}

#[test]
fn button_ids_are_unique() {
    assert_eq!(
        error_of(Send::buttons(TO, "Pick").button("a", "A").button("a", "B")),
        Some(SendError::DuplicateId { id: "a".into() })
    );
}

#[test]
fn buttons_body_footer_and_header_lengths() {
    let one = |body: String| Send::buttons(TO, body).button("a", "A");
    ok(one(x(1024)).footer(x(60)).header(Header::Text(x(60))));
    assert_eq!(error_of(one(x(1025))), too_long("body", 1024));
    assert_eq!(
        error_of(one("b".into()).footer(x(61))),
        too_long("footer", 60)
    );
    assert_eq!(
        error_of(one("b".into()).header(Header::Text(x(61)))),
        too_long("header", 60)
    );
    assert_eq!(
        error_of(one(String::new())),
        Some(SendError::Missing { field: "body" })
    );
    assert_eq!(
        error_of(one("b".into()).header(Header::Video(MediaSource::link("ftp://x/v.mp4")))),
        Some(SendError::NotAUrl {
            field: "media link",
            got: "ftp://x/v.mp4".into()
        })
    );
}

fn list_with_rows(sections: usize, rows_each: usize) -> Draft<List> {
    let mut draft = Send::list(TO, "Which?", "Choose");
    for s in 0..sections {
        let mut section = Section::new(format!("S{s}"));
        for r in 0..rows_each {
            section = section.row(Row::new(format!("{s}-{r}"), format!("Row {r}")));
        }
        draft = draft.section(section);
    }
    draft
}

#[test]
fn list_sections_and_rows_in_total() {
    ok(list_with_rows(10, 1));
    ok(list_with_rows(1, 10));
    ok(list_with_rows(2, 5));
    assert_eq!(
        error_of(list_with_rows(11, 1)),
        Some(SendError::TooManySections { max: 10, got: 11 })
    );
    assert_eq!(
        error_of(list_with_rows(1, 11)),
        Some(SendError::TooManyRows { max: 10, got: 11 })
    );
    // Ten per section is not the rule: ten in all.
    assert_eq!(
        error_of(list_with_rows(2, 6)),
        Some(SendError::TooManyRows { max: 10, got: 12 })
    );
    assert_eq!(
        error_of(Send::list(TO, "Which?", "Choose")),
        Some(SendError::NoRows)
    );
}

#[test]
fn list_sections_need_rows_and_titles_when_several() {
    assert_eq!(
        error_of(list_with_rows(1, 1).section(Section::new("Empty"))),
        Some(SendError::EmptySection { section: 2 })
    );
    assert_eq!(
        error_of(list_with_rows(1, 1).section(Section::untitled().row(Row::new("u", "U")))),
        Some(SendError::SectionTitleMissing { section: 2 })
    );
    // One section may go untitled.
    ok(Send::list(TO, "Which?", "Choose").row("a", "A"));
}

#[test]
fn list_lengths() {
    let row = |id: String, title: String, description: String| {
        Send::list(TO, "Which?", "Choose")
            .section(Section::new("S").row(Row::new(id, title).description(description)))
    };
    ok(row(x(200), x(24), x(72)));
    assert_eq!(
        error_of(row(x(201), "t".into(), "d".into())),
        too_long("row id", 200)
    );
    assert_eq!(
        error_of(row("i".into(), x(25), "d".into())),
        too_long("row title", 24)
    );
    assert_eq!(
        error_of(row("i".into(), "t".into(), x(73))),
        too_long("row description", 72)
    );

    let list = |body: String, button: String| Send::list(TO, body, button).row("a", "A");
    ok(list(x(4096), x(20)).header(x(60)).footer(x(60)));
    assert_eq!(error_of(list(x(4097), "B".into())), too_long("body", 4096));
    assert_eq!(
        error_of(list("b".into(), x(21))),
        too_long("list button", 20)
    );
    assert_eq!(
        error_of(list("b".into(), String::new())),
        Some(SendError::Missing {
            field: "list button"
        })
    );
    assert_eq!(
        error_of(list("b".into(), "B".into()).header(x(61))),
        too_long("header", 60)
    );
    assert_eq!(
        error_of(list("b".into(), "B".into()).footer(x(61))),
        too_long("footer", 60)
    );

    ok(Send::list(TO, "Which?", "Choose").section(Section::new(x(24)).row(Row::new("a", "A"))));
    assert_eq!(
        error_of(
            Send::list(TO, "Which?", "Choose").section(Section::new(x(25)).row(Row::new("a", "A")))
        ),
        too_long("section title", 24)
    );
}

#[test]
fn list_row_ids_are_unique_across_sections() {
    let list = Send::list(TO, "Which?", "Choose")
        .section(Section::new("A").row(Row::new("same", "One")))
        .section(Section::new("B").row(Row::new("same", "Two")));
    assert_eq!(
        error_of(list),
        Some(SendError::DuplicateId { id: "same".into() })
    );
}

#[test]
fn cta_url_text_url_and_body() {
    let cta = |body: String, text: String, url: &str| Send::cta_url(TO, body, text, url);
    ok(cta(x(1024), x(20), "https://example.com").footer(x(60)));
    ok(cta("b".into(), "Go".into(), "HTTP://example.com"));
    assert_eq!(
        error_of(cta("b".into(), x(21), "https://example.com")),
        too_long("call-to-action text", 20)
    );
    assert_eq!(
        error_of(cta(x(1025), "Go".into(), "https://example.com")),
        too_long("body", 1024)
    );
    assert_eq!(
        error_of(cta("b".into(), "Go".into(), "example.com")),
        Some(SendError::NotAUrl {
            field: "call-to-action URL",
            got: "example.com".into()
        })
    );
    assert_eq!(
        error_of(cta("b".into(), "Go".into(), "")),
        Some(SendError::Missing {
            field: "call-to-action URL"
        })
    );
}

#[test]
fn flow_fields() {
    let flow = |cta: String| Send::flow(TO, "Book", "123", cta);
    ok(flow(x(20)));
    ok(flow("Book".into())
        .navigate("WELCOME", Some(json!({"a": 1})))
        .flow_token("t"));
    assert_eq!(error_of(flow(x(21))), too_long("flow button", 20));
    assert_eq!(
        error_of(Send::flow(TO, "Book", "", "Go")),
        Some(SendError::Missing { field: "flow id" })
    );
    assert_eq!(
        error_of(flow("Go".into()).navigate("", None)),
        Some(SendError::Missing {
            field: "flow screen"
        })
    );
    assert_eq!(
        error_of(flow("Go".into()).navigate("S", Some(json!([1, 2])))),
        Some(SendError::FlowDataNotAnObject)
    );
    assert_eq!(
        error_of(Send::flow(TO, x(1025), "123", "Go")),
        too_long("body", 1024)
    );
}

#[test]
fn media_needs_an_id_or_a_link() {
    assert_eq!(
        error_of(Send::image(TO, MediaSource::id(""))),
        Some(SendError::Missing { field: "media id" })
    );
    assert_eq!(
        error_of(Send::image(TO, MediaSource::link("example.com/a.png"))),
        Some(SendError::NotAUrl {
            field: "media link",
            got: "example.com/a.png".into()
        })
    );
    ok(Send::image(
        TO,
        MediaSource::link("https://example.com/a.png"),
    ));
}

#[test]
fn captions_only_on_image_video_and_document() {
    for kind in [MediaKind::Image, MediaKind::Video, MediaKind::Document] {
        ok(Send::media(TO, kind, MediaSource::id("1")).caption(x(1024)));
        assert_eq!(
            error_of(Send::media(TO, kind, MediaSource::id("1")).caption(x(1025))),
            too_long("caption", 1024)
        );
    }
    for kind in [MediaKind::Audio, MediaKind::Sticker] {
        ok(Send::media(TO, kind, MediaSource::id("1")));
        assert_eq!(
            error_of(Send::media(TO, kind, MediaSource::id("1")).caption("c")),
            Some(SendError::CaptionNotAllowed { kind })
        );
    }
}

#[test]
fn filenames_only_on_documents() {
    ok(Send::document(TO, MediaSource::id("1")).filename("a.pdf"));
    for kind in [
        MediaKind::Image,
        MediaKind::Video,
        MediaKind::Audio,
        MediaKind::Sticker,
    ] {
        assert_eq!(
            error_of(Send::media(TO, kind, MediaSource::id("1")).filename("a.pdf")),
            Some(SendError::FilenameNotAllowed { kind })
        );
    }
}

#[test]
fn template_name_language_and_parameters() {
    ok(Send::template(TO, "hello", "en_US"));
    assert_eq!(
        error_of(Send::template(TO, "", "en_US")),
        Some(SendError::Missing {
            field: "template name"
        })
    );
    assert_eq!(
        error_of(Send::template(TO, "hello", "")),
        Some(SendError::Missing {
            field: "template language"
        })
    );
    assert_eq!(
        error_of(Send::template(TO, "hello", "en_US").body([TemplateParameter::text("")])),
        Some(SendError::Missing {
            field: "template text parameter"
        })
    );
    assert_eq!(
        error_of(
            Send::template(TO, "hello", "en_US").header([TemplateParameter::image(
                MediaSource::link("file:///etc/passwd")
            )])
        ),
        Some(SendError::NotAUrl {
            field: "media link",
            got: "file:///etc/passwd".into()
        })
    );
    assert_eq!(
        error_of(Send::template(TO, "hello", "en_US").button(
            ButtonSubType::QuickReply,
            0,
            [TemplateParameter::payload("")]
        )),
        Some(SendError::Missing {
            field: "button payload"
        })
    );
}

#[test]
fn a_reaction_is_one_emoji_or_empty() {
    for emoji in ["👍", "", "👍🏽", "❤️", "👨‍👩‍👧‍👦", "🇧🇷", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
    {
        ok(Send::reaction(TO, "wamid.M", emoji));
    }
    for emoji in ["ok", "👍👍", "🇧🇷🇳🇱", "1", "👍 ", "great 👍", "11️⃣"] {
        assert_eq!(
            error_of(Send::reaction(TO, "wamid.M", emoji)),
            Some(SendError::NotAnEmoji { got: emoji.into() }),
            "{emoji:?}"
        );
    }
    assert_eq!(
        error_of(Send::reaction(TO, "", "👍")),
        Some(SendError::Missing {
            field: "reaction message id"
        })
    );
    assert_eq!(
        error_of(Send::reaction(TO, "wamid.M", "👍").reply_to("wamid.M")),
        Some(SendError::ReplyToNotAllowed)
    );
}

#[test]
fn location_ranges() {
    ok(Send::location(TO, 90.0, 180.0));
    ok(Send::location(TO, -90.0, -180.0));
    assert_eq!(
        error_of(Send::location(TO, 90.5, 0.0)),
        Some(SendError::LatitudeOutOfRange { got: 90.5 })
    );
    assert_eq!(
        error_of(Send::location(TO, 0.0, -180.5)),
        Some(SendError::LongitudeOutOfRange { got: -180.5 })
    );
    assert!(matches!(
        error_of(Send::location(TO, f64::NAN, 0.0)),
        Some(SendError::LatitudeOutOfRange { .. })
    ));
}

#[test]
fn contacts_need_a_card_with_a_name() {
    assert_eq!(error_of(Send::contacts(TO)), Some(SendError::NoContacts));
    assert_eq!(
        error_of(Send::contacts(TO).contact(Contact::new(""))),
        Some(SendError::Missing {
            field: "contact name"
        })
    );
    assert_eq!(
        error_of(Send::contacts(TO).contact(Contact::new("Ana").phone(""))),
        Some(SendError::Missing {
            field: "contact phone number"
        })
    );
    ok(Send::contacts(TO).contact(Contact::new("Ana").phone("+1 555")));
}

#[test]
fn a_raw_message_is_an_object_with_a_type() {
    ok(Send::raw(
        TO,
        json!({"type": "text", "text": {"body": "hi"}}),
    ));
    for raw in [
        json!({"text": {"body": "hi"}}),
        json!([1]),
        json!({"type": 1}),
    ] {
        assert_eq!(
            error_of(Send::raw(TO, raw)),
            Some(SendError::RawNotAMessage)
        );
    }
}

#[test]
fn errors_say_what_is_wrong_and_what_is_allowed() {
    assert_eq!(
        SendError::TooManyButtons { max: 3, got: 4 }.to_string(),
        "the buttons message has 4 buttons: WhatsApp allows at most 3 (send a list for more choices)"
    );
    assert_eq!(
        SendError::TooLong {
            field: "button title",
            max: 20,
            got: 21
        }
        .to_string(),
        "the button title is 21 characters long: WhatsApp allows at most 20"
    );
    assert_eq!(
        SendError::CaptionNotAllowed {
            kind: MediaKind::Sticker
        }
        .to_string(),
        "a sticker cannot have a caption: only images, videos and documents can"
    );
}

#[test]
fn only_templates_go_outside_the_window() {
    let outside = [
        Send::template(TO, "hello_world", "en_US").build(),
        Send::raw(TO, json!({"type": "template", "template": {"name": "x"}})).build(),
    ];
    for send in outside {
        assert!(!send.needs_open_window(), "{send:?}");
    }
    let inside = [
        Send::text(TO, "hi").build(),
        Send::buttons(TO, "b").button("a", "A").build(),
        Send::image(TO, MediaSource::id("1")).build(),
        Send::location(TO, 0.0, 0.0).build(),
        Send::contacts(TO).contact(Contact::new("A")).build(),
        Send::reaction(TO, "wamid.M", "👍").build(),
        Send::raw(TO, json!({"type": "text", "text": {"body": "hi"}})).build(),
    ];
    for send in inside {
        assert!(send.needs_open_window(), "{send:?}");
    }
}

#[test]
fn a_fallback_template_goes_to_the_same_recipient_and_is_checked_as_a_template() {
    let send = Send::buttons(TO, "Pick one")
        .button("a", "A")
        .or_template(Send::template("someone else", "welcome_back", "en_US"))
        .build();
    assert_eq!(send.validate(), Ok(()));
    let fallback = send.fallback_send().unwrap();
    assert_eq!(fallback.to, TO);
    assert!(!fallback.needs_open_window());
    assert_eq!(fallback.to_cloud()["template"]["name"], "welcome_back");
    assert_eq!(Send::text(TO, "hi").build().fallback_send(), None);
    let unnamed = Send::text(TO, "hi")
        .or_template(Send::template(TO, " ", "en_US"))
        .build();
    assert!(unnamed.validate().is_err(), "{unnamed:?}");
    let back: Send = serde_json::from_value(serde_json::to_value(&send).unwrap()).unwrap();
    assert_eq!(back, send);
}

// ---- rendering: the exact body of every kind on both APIs ----

/// The send's bodies: On-Premises (with namespace `ns-default`) and Cloud.
fn bodies(send: impl Into<Send>) -> (Value, Value) {
    let send = send.into();
    assert_eq!(send.validate(), Ok(()));
    (send.to_onprem(Some("ns-default")).unwrap(), send.to_cloud())
}

#[test]
fn text_bodies() {
    let (onprem, cloud) = bodies(
        Send::text(TO, "Hi https://a.example")
            .preview_url(true)
            .reply_to("wamid.Q"),
    );
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"text","preview_url":true,
               "text":{"body":"Hi https://a.example"},"context":{"message_id":"wamid.Q"}})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"text",
               "text":{"preview_url":true,"body":"Hi https://a.example"},"context":{"message_id":"wamid.Q"}})
    );
}

#[test]
fn template_bodies() {
    let send = Send::template(TO, "order_update", "pt_BR")
        .header([TemplateParameter::document(
            MediaSource::link("https://a.example/o.pdf"),
            Some("order.pdf"),
        )])
        .body([
            TemplateParameter::text("5531"),
            TemplateParameter::currency("R$ 10,00", "BRL", 10_000),
            TemplateParameter::date_time("1 May 2026"),
        ])
        .button(
            ButtonSubType::QuickReply,
            0,
            [TemplateParameter::payload("track")],
        )
        .button(ButtonSubType::Url, 1, [TemplateParameter::text("5531")]);
    let components = json!([
        {"type":"header","parameters":[{"type":"document","document":{"link":"https://a.example/o.pdf","filename":"order.pdf"}}]},
        {"type":"body","parameters":[
            {"type":"text","text":"5531"},
            {"type":"currency","currency":{"fallback_value":"R$ 10,00","code":"BRL","amount_1000":10000}},
            {"type":"date_time","date_time":{"fallback_value":"1 May 2026"}}]},
        {"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"track"}]},
        {"type":"button","sub_type":"url","index":"1","parameters":[{"type":"text","text":"5531"}]}
    ]);
    let (onprem, cloud) = bodies(send);
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"template",
               "template":{"namespace":"ns-default","name":"order_update",
                           "language":{"policy":"deterministic","code":"pt_BR"},"components":components}})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"template",
               "template":{"name":"order_update","language":{"code":"pt_BR"},"components":components}})
    );
}

#[test]
fn template_media_parameters_and_no_components() {
    let (onprem, cloud) = bodies(
        Send::template(TO, "promo", "en")
            .namespace("ns-own")
            .header([TemplateParameter::image(MediaSource::id("77"))]),
    );
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"template",
               "template":{"namespace":"ns-own","name":"promo","language":{"policy":"deterministic","code":"en"},
                           "components":[{"type":"header","parameters":[{"type":"image","image":{"id":"77"}}]}]}})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"template",
               "template":{"name":"promo","language":{"code":"en"},
                           "components":[{"type":"header","parameters":[{"type":"image","image":{"id":"77"}}]}]}})
    );
    let (_, cloud) = bodies(
        Send::template(TO, "clip", "en").header([TemplateParameter::video(MediaSource::link(
            "https://a.example/v.mp4",
        ))]),
    );
    assert_eq!(
        cloud["template"]["components"][0]["parameters"][0],
        json!({"type":"video","video":{"link":"https://a.example/v.mp4"}})
    );
    let (onprem, cloud) = bodies(Send::template(TO, "hello_world", "en_US"));
    assert_eq!(
        onprem["template"],
        json!({"namespace":"ns-default","name":"hello_world","language":{"policy":"deterministic","code":"en_US"}})
    );
    assert_eq!(
        cloud["template"],
        json!({"name":"hello_world","language":{"code":"en_US"}})
    );
}

#[test]
fn an_onprem_template_needs_a_namespace() {
    let send = Send::template(TO, "hello_world", "en_US").build();
    assert_eq!(
        send.to_onprem(None),
        Err(SendError::MissingNamespace {
            template: "hello_world".into()
        })
    );
    // Other kinds need none.
    assert!(Send::text(TO, "hi").build().to_onprem(None).is_ok());
}

#[test]
fn buttons_bodies() {
    let (onprem, cloud) = bodies(
        Send::buttons(TO, "Confirm your 14:00 slot?")
            .header(Header::Image(MediaSource::id("img-1")))
            .footer("Reply by noon")
            .button("confirm_yes", "Yes")
            .button("confirm_no", "No")
            .reply_to("wamid.Q"),
    );
    let interactive = json!({"type":"button",
        "header":{"type":"image","image":{"id":"img-1"}},
        "body":{"text":"Confirm your 14:00 slot?"},
        "footer":{"text":"Reply by noon"},
        "action":{"buttons":[{"type":"reply","reply":{"id":"confirm_yes","title":"Yes"}},
                             {"type":"reply","reply":{"id":"confirm_no","title":"No"}}]}});
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"interactive","interactive":interactive,
               "context":{"message_id":"wamid.Q"}})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"interactive",
               "interactive":interactive,"context":{"message_id":"wamid.Q"}})
    );
}

#[test]
fn the_reference_example_of_reply_buttons() {
    // The Cloud example of the reference, exactly.
    let cloud = Send::buttons("5511987650001", "Confirm your 14:00 slot?")
        .button("confirm_yes", "Yes")
        .button("confirm_no", "No")
        .build()
        .to_cloud();
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"5511987650001","type":"interactive",
               "interactive":{"type":"button","body":{"text":"Confirm your 14:00 slot?"},
                "action":{"buttons":[{"type":"reply","reply":{"id":"confirm_yes","title":"Yes"}},
                                     {"type":"reply","reply":{"id":"confirm_no","title":"No"}}]}}})
    );
}

#[test]
fn list_bodies() {
    let (onprem, cloud) = bodies(
        Send::list(TO, "Which slot?", "Slots")
            .header("Tomorrow")
            .footer("Times are local")
            .section(
                Section::new("Morning")
                    .row(Row::new("m9", "9:00").description("with Ana"))
                    .row(Row::new("m10", "10:00")),
            )
            .section(Section::new("Afternoon").row(Row::new("a14", "14:00"))),
    );
    let interactive = json!({"type":"list",
        "header":{"type":"text","text":"Tomorrow"},
        "body":{"text":"Which slot?"},
        "footer":{"text":"Times are local"},
        "action":{"button":"Slots","sections":[
            {"title":"Morning","rows":[{"id":"m9","title":"9:00","description":"with Ana"},{"id":"m10","title":"10:00"}]},
            {"title":"Afternoon","rows":[{"id":"a14","title":"14:00"}]}]}});
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"interactive","interactive":interactive})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"interactive","interactive":interactive})
    );
    // An untitled single section has no title key.
    let (_, cloud) = bodies(Send::list(TO, "Which?", "Choose").row("a", "A"));
    assert_eq!(
        cloud["interactive"]["action"],
        json!({"button":"Choose","sections":[{"rows":[{"id":"a","title":"A"}]}]})
    );
}

#[test]
fn cta_url_bodies() {
    let (onprem, cloud) = bodies(
        Send::cta_url(TO, "Track your order", "Track", "https://a.example/t/5531")
            .header(Header::Text("Order 5531".into())),
    );
    let interactive = json!({"type":"cta_url",
        "header":{"type":"text","text":"Order 5531"},
        "body":{"text":"Track your order"},
        "action":{"name":"cta_url","parameters":{"display_text":"Track","url":"https://a.example/t/5531"}}});
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"interactive","interactive":interactive})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"interactive","interactive":interactive})
    );
}

#[test]
fn flow_bodies() {
    let (onprem, cloud) = bodies(
        Send::flow(TO, "Book a table", "1234567890", "Book")
            .header(Header::Document(MediaSource::link(
                "https://a.example/menu.pdf",
            )))
            .footer("Takes a minute")
            .flow_token("booking-77")
            .navigate("WELCOME", Some(json!({"party": 2}))),
    );
    let interactive = json!({"type":"flow",
        "header":{"type":"document","document":{"link":"https://a.example/menu.pdf"}},
        "body":{"text":"Book a table"},
        "footer":{"text":"Takes a minute"},
        "action":{"name":"flow","parameters":{
            "flow_message_version":"3","flow_id":"1234567890","flow_cta":"Book","flow_token":"booking-77",
            "flow_action":"navigate","flow_action_payload":{"screen":"WELCOME","data":{"party":2}}}}});
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"interactive","interactive":interactive})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"interactive","interactive":interactive})
    );
    let (_, cloud) = bodies(Send::flow(TO, "Book", "42", "Go"));
    assert_eq!(
        cloud["interactive"]["action"],
        json!({"name":"flow","parameters":{"flow_message_version":"3","flow_id":"42","flow_cta":"Go",
                                           "flow_action":"data_exchange"}})
    );
}

#[test]
fn media_bodies() {
    let cases = [
        (
            Send::image(TO, MediaSource::id("i1")).caption("The shop"),
            "image",
            json!({"id":"i1","caption":"The shop"}),
        ),
        (
            Send::video(TO, MediaSource::link("https://a.example/v.mp4")).caption("Tour"),
            "video",
            json!({"link":"https://a.example/v.mp4","caption":"Tour"}),
        ),
        (
            Send::audio(TO, MediaSource::id("a1")),
            "audio",
            json!({"id":"a1"}),
        ),
        (
            Send::document(TO, MediaSource::link("https://a.example/i.pdf"))
                .caption("Invoice")
                .filename("invoice.pdf"),
            "document",
            json!({"link":"https://a.example/i.pdf","caption":"Invoice","filename":"invoice.pdf"}),
        ),
        (
            Send::sticker(TO, MediaSource::link("https://a.example/s.webp")),
            "sticker",
            json!({"link":"https://a.example/s.webp"}),
        ),
    ];
    for (draft, kind, content) in cases {
        let (onprem, cloud) = bodies(draft);
        let mut expected = json!({"recipient_type":"individual","to":TO,"type":kind});
        expected[kind] = content.clone();
        assert_eq!(onprem, expected, "{kind}");
        let mut expected = json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":kind});
        expected[kind] = content;
        assert_eq!(cloud, expected, "{kind}");
    }
}

#[test]
fn location_bodies() {
    let (onprem, cloud) = bodies(
        Send::location(TO, 52.37, 4.89)
            .name("The shop")
            .address("Damrak 1, Amsterdam"),
    );
    let location = json!({"latitude":52.37,"longitude":4.89,"name":"The shop","address":"Damrak 1, Amsterdam"});
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"location","location":location})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"location","location":location})
    );
    let (_, cloud) = bodies(Send::location(TO, -23.5, -46.6));
    assert_eq!(
        cloud["location"],
        json!({"latitude":-23.5,"longitude":-46.6})
    );
}

#[test]
fn contacts_bodies() {
    let (onprem, cloud) = bodies(
        Send::contacts(TO)
            .contact(
                Contact::new("Ana Souza")
                    .first_name("Ana")
                    .last_name("Souza")
                    .phone(
                        ContactPhone::new("+55 11 98765 0001")
                            .kind("CELL")
                            .wa_id("5511987650001"),
                    )
                    .email(ContactEmail::new("ana@a.example").kind("WORK")),
            )
            .contact(Contact::new("Front desk").phone("+31 20 555 0100")),
    );
    let contacts = json!([
        {"name":{"formatted_name":"Ana Souza","first_name":"Ana","last_name":"Souza"},
         "phones":[{"phone":"+55 11 98765 0001","type":"CELL","wa_id":"5511987650001"}],
         "emails":[{"email":"ana@a.example","type":"WORK"}]},
        {"name":{"formatted_name":"Front desk"},"phones":[{"phone":"+31 20 555 0100"}]}
    ]);
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"contacts","contacts":contacts})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"contacts","contacts":contacts})
    );
}

#[test]
fn reaction_bodies() {
    let (onprem, cloud) = bodies(Send::reaction(TO, "wamid.M1", "👍"));
    assert_eq!(
        onprem,
        json!({"recipient_type":"individual","to":TO,"type":"reaction",
               "reaction":{"message_id":"wamid.M1","emoji":"👍"}})
    );
    assert_eq!(
        cloud,
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":TO,"type":"reaction",
               "reaction":{"message_id":"wamid.M1","emoji":"👍"}})
    );
    let (_, cloud) = bodies(Send::reaction(TO, "wamid.M1", ""));
    assert_eq!(
        cloud["reaction"],
        json!({"message_id":"wamid.M1","emoji":""})
    );
}

#[test]
fn raw_bodies_pass_through_with_to_set() {
    let raw = json!({"type":"interactive","to":"someone-else",
        "interactive":{"type":"location_request_message","body":{"text":"Where are you?"},
                       "action":{"name":"send_location"}}});
    let (onprem, cloud) = bodies(Send::raw(TO, raw).reply_to("wamid.Q"));
    let expected = json!({"type":"interactive","to":TO,
        "interactive":{"type":"location_request_message","body":{"text":"Where are you?"},
                       "action":{"name":"send_location"}},
        "context":{"message_id":"wamid.Q"}});
    assert_eq!(onprem, expected);
    let mut expected_cloud = expected;
    expected_cloud["messaging_product"] = json!("whatsapp");
    assert_eq!(cloud, expected_cloud);
    // The raw message's own fields are kept.
    let (_, cloud) = bodies(Send::raw(
        TO,
        json!({"type":"text","recipient_type":"group","messaging_product":"whatsapp","text":{"body":"hi"}}),
    ));
    assert_eq!(
        cloud,
        json!({"type":"text","recipient_type":"group","messaging_product":"whatsapp","to":TO,"text":{"body":"hi"}})
    );
}

#[test]
fn mark_read_bodies() {
    let read = MarkRead::new("wamid.M1");
    assert_eq!(read.to_onprem(), json!({"status":"read"}));
    assert_eq!(
        read.to_cloud(),
        json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.M1"})
    );
    assert_eq!(
        read.typing_indicator().to_cloud(),
        json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.M1",
               "typing_indicator":{"type":"text"}})
    );
}

#[test]
fn a_send_round_trips_through_serde() {
    let send = Send::list(TO, "Which?", "Choose")
        .section(Section::new("S").row(Row::new("a", "A").description("d")))
        .reply_to("wamid.Q")
        .build();
    let text = serde_json::to_string(&send).unwrap();
    assert_eq!(serde_json::from_str::<Send>(&text).unwrap(), send);
}

// ---- classification of WhatsApp's errors ----

fn dead(code: i64, title: &str, reason: DeadLetterReason) -> Outcome {
    Outcome::DeadLetter {
        code: Some(code),
        title: title.into(),
        reason,
    }
}

#[test]
fn codes_that_are_dead_lettered() {
    for (code, reason) in [
        (131047, DeadLetterReason::WindowClosed),
        (470, DeadLetterReason::WindowClosed),
        (131026, DeadLetterReason::Undeliverable),
        (131009, DeadLetterReason::InvalidParameter),
        (131049, DeadLetterReason::EcosystemHealth),
    ] {
        let error = ApiError::new(code, "its title");
        // In a send's response (Cloud answers 400) and in a failed status later.
        assert_eq!(
            classify(Some(400), Some(&error), None),
            dead(code, "its title", reason),
            "{code}"
        );
        assert_eq!(
            classify(None, Some(&error), None),
            dead(code, "its title", reason),
            "{code}"
        );
    }
    // Without a title, the code's meaning stands in.
    assert_eq!(
        classify(Some(400), Some(&ApiError::new(131047, "")), None),
        dead(
            131047,
            "more than 24 hours since the customer's last message",
            DeadLetterReason::WindowClosed
        )
    );
}

#[test]
fn throughput_codes_pace_the_number_down() {
    for code in [130429, 80007, 4] {
        let error = ApiError::new(code, "rate");
        assert_eq!(
            classify(Some(400), Some(&error), None),
            Outcome::PaceDown {
                code,
                retry_after: None
            }
        );
        assert_eq!(
            classify(Some(429), Some(&error), Some(Duration::from_secs(3))),
            Outcome::PaceDown {
                code,
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }
}

#[test]
fn the_pair_rate_limit_backs_off_the_recipient() {
    assert_eq!(
        classify(Some(400), Some(&ApiError::new(131056, "pair")), None),
        Outcome::BackOffRecipient { code: 131056 }
    );
    let waits: Vec<u64> = (0..7).map(|n| recipient_backoff(n).as_secs()).collect();
    assert_eq!(waits, [1, 4, 16, 64, 256, 256, 256]);
    assert_eq!(recipient_backoff(u32::MAX), Duration::from_secs(256));
}

#[test]
fn spam_rate_limits_pause_the_number() {
    for code in [131048, 471] {
        assert_eq!(
            classify(Some(400), Some(&ApiError::new(code, "spam")), None),
            Outcome::PauseNumber {
                code,
                title: "spam".into()
            }
        );
    }
}

#[test]
fn maintenance_and_coreapp_overload_retry_after_a_pause() {
    assert_eq!(
        classify(Some(400), Some(&ApiError::new(131057, "maintenance")), None),
        Outcome::Retry {
            after: Some(Duration::from_secs(60))
        }
    );
    // A longer Retry-After is honoured, a shorter one is not enough.
    assert_eq!(
        classify(
            Some(503),
            Some(&ApiError::new(131057, "m")),
            Some(Duration::from_secs(90))
        ),
        Outcome::Retry {
            after: Some(Duration::from_secs(90))
        }
    );
    assert_eq!(
        classify(
            Some(503),
            Some(&ApiError::new(131057, "m")),
            Some(Duration::from_secs(5))
        ),
        Outcome::Retry {
            after: Some(Duration::from_secs(60))
        }
    );
    for code in [1015, 429, 503] {
        assert_eq!(
            classify(Some(429), Some(&ApiError::new(code, "busy")), None),
            Outcome::Retry {
                after: Some(Duration::from_secs(2))
            },
            "{code}"
        );
    }
}

#[test]
fn http_statuses_without_a_known_code() {
    let seven = Some(Duration::from_secs(7));
    assert_eq!(
        classify(Some(429), None, seven),
        Outcome::Retry { after: seven }
    );
    assert_eq!(
        classify(Some(429), None, None),
        Outcome::Retry {
            after: Some(Duration::from_secs(2))
        }
    );
    assert_eq!(
        classify(Some(503), None, None),
        Outcome::Retry {
            after: Some(Duration::from_secs(2))
        }
    );
    for status in [408, 500, 502, 504] {
        assert_eq!(
            classify(Some(status), None, None),
            Outcome::Retry { after: None }
        );
    }
    assert_eq!(
        classify(
            Some(500),
            Some(&ApiError::new(131000, "Something went wrong")),
            None
        ),
        Outcome::Retry { after: None }
    );
    // A timeout or refused connection: no answer at all.
    assert_eq!(classify(None, None, None), Outcome::Retry { after: None });
    assert_eq!(
        classify(Some(400), None, None),
        Outcome::DeadLetter {
            code: None,
            title: "HTTP 400".into(),
            reason: DeadLetterReason::Rejected
        }
    );
    assert_eq!(
        classify(
            Some(400),
            Some(&ApiError::new(100, "Invalid parameter")),
            None
        ),
        dead(100, "Invalid parameter", DeadLetterReason::Rejected)
    );
    // An unknown code in a failed status: the message failed for good.
    assert_eq!(
        classify(None, Some(&ApiError::new(131999, "")), None),
        dead(131999, "the message failed", DeadLetterReason::Rejected)
    );
}

#[test]
fn api_errors_from_both_apis() {
    let cloud = br#"{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,
        "error_data":{"messaging_product":"whatsapp","details":"More than 24 hours have passed"},"fbtrace_id":"A"}}"#;
    assert_eq!(
        ApiError::from_body(cloud),
        Some(ApiError {
            code: 131047,
            title: "(#131047) Re-engagement message".into(),
            details: Some("More than 24 hours have passed".into()),
        })
    );
    let onprem = br#"{"errors":[{"code":470,"title":"Message failed to send","details":"window"}],"meta":{}}"#;
    assert_eq!(
        ApiError::from_body(onprem),
        Some(ApiError {
            code: 470,
            title: "Message failed to send".into(),
            details: Some("window".into()),
        })
    );
    assert_eq!(
        ApiError::from_json(&json!({"code":"131056","title":"pair"})).map(|e| e.code),
        Some(131056)
    );
    for body in [
        "not json",
        "{}",
        r#"{"errors":[]}"#,
        r#"{"error":{"code":"x"}}"#,
    ] {
        assert_eq!(ApiError::from_body(body.as_bytes()), None, "{body}");
    }
    assert_eq!(
        ApiError::from_body(onprem).unwrap().to_string(),
        "WhatsApp error 470: Message failed to send (window)"
    );
}

// ---- the 0.2.0 contract ----

/// Bindings of `wit/v0.2.0`: generating them parses and resolves the package.
#[allow(dead_code, missing_docs, unsafe_op_in_unsafe_fn, clippy::all)]
mod v0_2_0 {
    wit_bindgen::generate!({ path: "../wit/v0.2.0", world: "plugin" });
}

#[test]
fn the_0_2_0_contract_has_typed_sends_windows_and_a_failing_kv_set() {
    use v0_2_0::switchboard::plugin::host;
    use v0_2_0::switchboard::plugin::types as wit;

    let send = wit::Action::Send(wit::Send {
        to: TO.into(),
        message: wit::OutgoingMessage::Interactive(wit::Interactive::List(wit::ListMessage {
            header: None,
            body: "Which?".into(),
            footer: None,
            button: "Choose".into(),
            sections: vec![wit::ListSection {
                title: None,
                rows: vec![wit::ListRow {
                    id: "a".into(),
                    title: "A".into(),
                    description: None,
                }],
            }],
        })),
        reply_to: Some("wamid.Q".into()),
        fallback: Some(wit::Template {
            name: "hello".into(),
            language: "en_US".into(),
            namespace: None,
            components: vec![],
        }),
    });
    assert!(matches!(send, wit::Action::Send(_)));
    let media = wit::OutgoingMessage::Media(wit::Media {
        kind: wit::MediaKind::Sticker,
        source: wit::MediaSource::Link("https://a.example/s.webp".into()),
        caption: None,
        filename: None,
    });
    assert!(matches!(media, wit::OutgoingMessage::Media(_)));
    let read = wit::Action::MarkRead(wit::MarkRead {
        message_id: "wamid.M".into(),
        typing_indicator: true,
    });
    assert!(matches!(read, wit::Action::MarkRead(_)));
    let sent_by = wit::SentBy {
        plugin: "menu-bot".into(),
        notification_id: "wamid.M".into(),
        delivery_id: 7,
    };
    let window = |n: &wit::Notification| (n.window_open, n.window_until, n.sent_by.is_some());
    let _: fn(&wit::Notification) -> (bool, Option<u64>, bool) = window;
    assert_eq!(sent_by.delivery_id, 7);
    // kv-set reports failure.
    #[allow(clippy::type_complexity)]
    let _: fn(&str, &[u8], Option<u64>) -> Result<(), String> = host::kv_set;
}

mod wire_v0_2_0 {
    use super::v0_2_0::switchboard::plugin::types as w;
    crate::__send_wire!(w);
}

/// One send of every kind and variant the contract has, with every optional field set.
fn every_kind() -> Vec<Send> {
    let header = Header::Document(MediaSource::link("https://a.example/menu.pdf"));
    vec![
        Send::text(TO, "Hi https://a.example")
            .preview_url(true)
            .reply_to("wamid.Q")
            .or_template(
                Send::template(TO, "hello", "en_US")
                    .namespace("ns-2")
                    .body([TemplateParameter::text("Ana")]),
            )
            .build(),
        Send::template(TO, "order_update", "pt_BR")
            .namespace("ns-1")
            .header([TemplateParameter::image(MediaSource::id("42"))])
            .body([
                TemplateParameter::text("5531"),
                TemplateParameter::currency("R$ 10,00", "BRL", 10_000),
                TemplateParameter::date_time("1 May"),
                TemplateParameter::document(
                    MediaSource::link("https://a.example/r.pdf"),
                    Some("r.pdf"),
                ),
                TemplateParameter::video(MediaSource::id("7")),
            ])
            .button(
                ButtonSubType::QuickReply,
                0,
                [TemplateParameter::payload("stop")],
            )
            .button(ButtonSubType::Url, 1, [TemplateParameter::text("5531")])
            .build(),
        Send::buttons(TO, "Pick")
            .header(Header::Text("Slots".into()))
            .footer("f")
            .button("a", "A")
            .build(),
        Send::list(TO, "Which?", "Choose")
            .header("Stores")
            .footer("f")
            .section(Section::new("S").row(Row::new("r1", "One").description("d")))
            .build(),
        Send::cta_url(TO, "Track", "Open", "https://a.example/t")
            .header(header.clone())
            .footer("f")
            .build(),
        Send::flow(TO, "Book", "flow-1", "Start")
            .header(Header::Video(MediaSource::id("9")))
            .navigate("WELCOME", Some(json!({"a": 1})))
            .flow_token("tok")
            .build(),
        Send::flow(TO, "Book", "flow-1", "Start")
            .header(Header::Image(MediaSource::id("8")))
            .build(),
        Send::document(TO, MediaSource::link("https://a.example/d.pdf"))
            .caption("c")
            .filename("d.pdf")
            .build(),
        Send::image(TO, MediaSource::id("1")).caption("c").build(),
        Send::video(TO, MediaSource::id("2")).build(),
        Send::audio(TO, MediaSource::id("3")).build(),
        Send::sticker(TO, MediaSource::id("4")).build(),
        Send::location(TO, -23.56, -46.65)
            .name("Store")
            .address("Paulista Ave")
            .build(),
        Send::contacts(TO)
            .contact(
                Contact::new("Support")
                    .first_name("Ana")
                    .last_name("Souza")
                    .phone(ContactPhone::new("+55 11 5555").kind("WORK").wa_id("5511"))
                    .email(ContactEmail::new("s@a.example").kind("WORK")),
            )
            .build(),
        Send::reaction(TO, "wamid.M1", "👍").build(),
        Send::raw(TO, json!({"type": "sticker", "sticker": {"id": "5"}})).build(),
    ]
}

#[test]
fn every_kind_crosses_the_0_2_0_contract_unchanged() {
    for send in every_kind() {
        let back = wire_v0_2_0::send_from_wit(wire_v0_2_0::send_to_wit(send.clone()));
        assert_eq!(back, send);
        assert_eq!(back.to_cloud(), send.to_cloud());
    }
}
