# The standard suite: the same work for every target. Expects bench-common.sh to be sourced,
# a server started, and $results set.

suite() { # target
  local t="$1"
  case="fanout 50x1 64 B";       bench "$t" "$server_addr" fanout --subscribers 50 --messages "$(n 100000)" --size 64
  case="fanout 50x1 1 KiB";      bench "$t" "$server_addr" fanout --subscribers 50 --messages "$(n 20000)" --size 1024
  case="latency 1000/s 50x 64 B"; bench "$t" "$server_addr" fanout --subscribers 50 --messages "$(n 5000)" --size 64 --rate 1000
  case="latency 1000/s 10x 1 KiB"; bench "$t" "$server_addr" fanout --subscribers 10 --messages "$(n 5000)" --size 1024 --rate 1000
  if [[ "$t" != ncat ]]; then
    case="request/response 10 conns"; bench "$t" "$server_addr" echo --connections 10 --requests "$(n 100000)"
  fi
  if [[ "$t" == tlschat ]]; then
    case="full handshake";   bench "$t" "$server_addr" connect --count "$(n 2000)"
    case="resumed handshake"; bench "$t" "$server_addr" connect --count "$(n 2000)" --resume
    case="idle connections"; bench "$t" "$server_addr" hold --connections "$(n 5000)"
    case="signed UDP request/response"; bench "$t" "$udp_addr" udp --requests "$(n 20000)"
  elif [[ "$t" == ncat ]]; then
    # No handshake or idle rows for ncat: in --chat mode it quits when a client closes right
    # after its handshake ("getpeername ... failed ... QUITTING"), and it stops accepting once
    # idle clients that do not read fill up with its join announcements (blocking writes).
    :
  else
    case="idle connections"; bench "$t" "$server_addr" hold --connections "$(n 5000)"
  fi
}
