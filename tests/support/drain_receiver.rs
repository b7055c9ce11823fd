//! An HTTP log drain receiver for the tests: records every POST (its
//! octet-counted frames split) and answers 200, or 503 while it is down.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One POST an HTTP drain received.
#[derive(Clone, Debug)]
pub struct Post {
    pub target: String,
    pub headers: HashMap<String, String>,
    pub frames: Vec<String>,
}

/// An HTTP drain receiver on an ephemeral port: records every POST and
/// answers 200, or 503 while it is `down`.
pub struct Receiver {
    pub port: u16,
    pub posts: Arc<Mutex<Vec<Post>>>,
    pub down: Arc<AtomicBool>,
    pub open: Arc<AtomicUsize>,
    pub closed: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let receiver = Receiver {
            port: listener.local_addr().unwrap().port(),
            posts: Arc::default(),
            down: Arc::default(),
            open: Arc::default(),
            closed: Arc::default(),
        };
        let (posts, down, open, closed) = (
            receiver.posts.clone(),
            receiver.down.clone(),
            receiver.open.clone(),
            receiver.closed.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (posts, down, open, closed) =
                    (posts.clone(), down.clone(), open.clone(), closed.clone());
                open.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    serve(stream, &posts, &down);
                    open.fetch_sub(1, Ordering::SeqCst);
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        receiver
    }

    pub fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Every frame received on `target`, in order.
    pub fn frames(&self, target: &str) -> Vec<String> {
        self.posts()
            .into_iter()
            .filter(|p| p.target == target)
            .flat_map(|p| p.frames)
            .collect()
    }
}

/// Serves one connection's requests until the client hangs up.
fn serve(stream: TcpStream, posts: &Mutex<Vec<Post>>, down: &AtomicBool) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer: &[u8] = if down.load(Ordering::SeqCst) {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
        } else {
            posts.lock().unwrap().push(Post {
                target,
                headers,
                frames: split_frames(&body),
            });
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        };
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// Splits an octet-counted body (`LEN SP MESSAGE`...) into its messages;
/// panics on anything else.
pub fn split_frames(mut body: &[u8]) -> Vec<String> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        let space = body
            .iter()
            .position(|&b| b == b' ')
            .expect("a frame starts with its length and a space");
        let len: usize = std::str::from_utf8(&body[..space])
            .unwrap()
            .parse()
            .expect("a frame's length is a number");
        let end = space + 1 + len;
        assert!(end <= body.len(), "a frame is as long as it says");
        frames.push(String::from_utf8(body[space + 1..end].to_vec()).unwrap());
        body = &body[end..];
    }
    frames
}
