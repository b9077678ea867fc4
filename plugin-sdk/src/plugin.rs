use crate::whatsapp::{Message, Status, WhatsAppError};
use crate::{Action, Config, Kind, Notification};

/// A Switchboard plugin. Implement [`Plugin::init`] and the `on_*` methods for the kinds of
/// notification you care about; the others do nothing by default. Register the type with
/// [`register_plugin!`](crate::register_plugin).
///
/// A plugin must not rely on memory between calls: the host may run several instances, and
/// replaces an instance after a failure. Keep state in the [key-value store](crate::kv).
pub trait Plugin: Sized + 'static {
    /// Build the plugin from its `[config]`. An error keeps the plugin from loading, and is
    /// shown to the operator.
    fn init(config: Config) -> Result<Self, String>;

    /// Handle one notification; `n.prior` holds the actions of the plugins before this one.
    /// The default parses the item and calls the `on_*` method of its kind.
    fn handle(&self, n: &Notification) -> Result<Vec<Action>, String> {
        match n.kind {
            Kind::Message => self.on_message(n, &n.message()?),
            Kind::Status => self.on_status(n, &n.status()?),
            Kind::Error => self.on_error(n, &n.error()?),
        }
    }

    /// An inbound message.
    fn on_message(&self, n: &Notification, message: &Message) -> Result<Vec<Action>, String> {
        let _ = (n, message);
        Ok(Vec::new())
    }

    /// A status of a message the business sent.
    fn on_status(&self, n: &Notification, status: &Status) -> Result<Vec<Action>, String> {
        let _ = (n, status);
        Ok(Vec::new())
    }

    /// An out-of-band error.
    fn on_error(&self, n: &Notification, error: &WhatsAppError) -> Result<Vec<Action>, String> {
        let _ = (n, error);
        Ok(Vec::new())
    }
}

/// Register a [`Plugin`] type as the plugin of this crate: it exports the component's `init`
/// and `handle` when built for `wasm32-wasip2`, and does nothing in native builds, so the same
/// crate is unit-tested natively.
#[macro_export]
macro_rules! register_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // Stamps the contract version into the module, so the host can say clearly when a
            // plugin needs another version before it tries to link it.
            #[used]
            #[unsafe(link_section = "switchboard:api-version")]
            static API_VERSION: [u8; $crate::API_VERSION.len()] = $crate::__private::api_version_bytes();

            struct Guest;

            ::std::thread_local! {
                static PLUGIN: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::Guest for Guest {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    let plugin = $crate::__private::init::<$plugin>(&config)?;
                    PLUGIN.with(|cell| *cell.borrow_mut() = ::core::option::Option::Some(plugin));
                    ::core::result::Result::Ok(())
                }

                fn handle(
                    n: $crate::__private::WitNotification,
                    prior: ::std::vec::Vec<$crate::__private::WitAction>,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::__private::WitAction>, ::std::string::String> {
                    PLUGIN.with(|cell| match &*cell.borrow() {
                        ::core::option::Option::Some(plugin) => $crate::__private::handle(plugin, n, prior),
                        ::core::option::Option::None => {
                            ::core::result::Result::Err("handle called before init".into())
                        }
                    })
                }
            }

            $crate::__private::bindings::__export_plugin_world!(Guest with_types_in $crate::__private::bindings);
        };
    };
}
