// Minimal edge-dac subscriber in Node.js (npm package "zeromq" >= 6).
// Usage: node subscriber.js [ENDPOINT] [COUNT]   e.g. node subscriber.js tcp://127.0.0.1:5556 10
// Prints one line per message: the topic, a tab, then the message as JSON.
const zmq = require("zeromq");

async function main() {
  const endpoint = process.argv[2] || "ipc:///run/edge-dac/captions.sock";
  const count = Number(process.argv[3] || Infinity);
  const socket = new zmq.Subscriber();
  socket.connect(endpoint);
  socket.subscribe("edge-dac/v1/"); // captions, events and status of every device
  const lastSeq = new Map();
  let received = 0;
  for await (const [topic, body] of socket) {
    const message = JSON.parse(body.toString("utf8"));
    const name = topic.toString("utf8");
    if (lastSeq.has(name) && message.seq !== lastSeq.get(name) + 1) console.error(`${name}: gap before seq ${message.seq}`);
    lastSeq.set(name, message.seq);
    if (message.type === "caption") console.error(`${message.audio.start} ${message.caption} (${message.candidates[0].score})`);
    console.log(`${name}\t${JSON.stringify(message)}`);
    if (++received >= count) break;
  }
  socket.close();
}

main().catch((error) => { console.error(error.message); process.exit(1); });
