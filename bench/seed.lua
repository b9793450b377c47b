-- wrk script: the seed's mix of requests (generate_data.sh), each with its
-- Host header, cycled in proportion: swords, horses and guild actions.
local requests = {}
local function add(n, host, path)
  for _ = 1, n do
    requests[#requests + 1] = wrk.format("POST", path, { ["Host"] = host, ["User-Agent"] = "ApacheBench/2.3", ["Accept"] = "*/*" })
  end
end
add(100, "user1.comcast.com", "/purchase_a_sword/red/2")
add(100, "user2.comcast.com", "/purchase_a_sword/red/3")
add(500, "user3.comcast.com", "/purchase_a_sword/red/1")
add(200, "user1.comcast.com", "/purchase_a_sword/blue/1")
add(200, "user2.comcast.com", "/purchase_a_sword/blue/2")
add(10, "user3.comcast.com", "/purchase_a_sword/blue/3")
add(300, "user1.comcast.com", "/purchase_a_sword/green/1")
add(100, "user2.comcast.com", "/purchase_a_sword/green/1")
add(100, "user3.comcast.com", "/purchase_a_sword/green/1")
add(100, "user1.comcast.com", "/purchase_a_horse/1/small/1")
add(500, "user2.comcast.com", "/purchase_a_horse/1/small/1")
add(200, "user3.comcast.com", "/purchase_a_horse/1/small/1")
add(200, "user1.comcast.com", "/purchase_a_horse/1/medium/2")
add(400, "user2.comcast.com", "/purchase_a_horse/1/medium/1")
add(300, "user3.comcast.com", "/purchase_a_horse/1/medium/1")
add(50, "user1.comcast.com", "/purchase_a_horse/1/large/1")
add(50, "user2.comcast.com", "/purchase_a_horse/1/large/1")
add(500, "user3.comcast.com", "/purchase_a_horse/1/large/1")
add(200, "user1.comcast.com", "/guild/join")
add(100, "user1.comcast.com", "/guild/leave")

-- Interleave deterministically so every window of requests is a mix.
local mixed, step = {}, 997
local i = 1
for _ = 1, #requests do
  mixed[#mixed + 1] = requests[i]
  i = (i + step - 1) % #requests + 1
end
requests = mixed

local counter = 0
request = function()
  counter = counter % #requests + 1
  return requests[counter]
end

local non2xx = 0
response = function(status)
  if status >= 300 then non2xx = non2xx + 1 end
end
