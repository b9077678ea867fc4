use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = switchboard::cli::Cli::parse();
    switchboard::cli::init_logging();
    match switchboard::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// jemalloc instead of glibc's malloc. In the load bench (SQLite, three plugins, end to end)
/// glibc's malloc spent about a quarter of the server's CPU in its own locks, bins and
/// consolidation: 200–206 µs per webhook against 146–149 µs with jemalloc, at 4,865–5,731
/// against 6,405–6,807 webhooks a second.
///
/// It serves the C code too (SQLite): `malloc` and `free` are jemalloc's in the whole process.
/// Left to glibc, SQLite's allocations took an arena per thread that allocates, up to eight
/// per core: 33 MB of resident memory at the bench's peak, in five arenas. With them in
/// jemalloc's one arena the bench's peak was 95–98 MB against 100–106 MB (three paired runs).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation, before `main`. One arena: each thread
/// allocates from a cache of its own and locks the arena only to refill or empty it; more
/// arenas (two, or jemalloc's default of four per core) kept more memory at about the same
/// speed (peak 107–124 MB in the bench). Thread caches hold blocks up to 4 KiB, not 32 KiB:
/// in three paired bench runs the peak went down by 5–19 MB, at the same CPU per webhook.
/// `MALLOC_CONF` in the environment still decides.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: Option<&u8> = Some(&b"narenas:1,tcache_max:4096\0"[0]);
