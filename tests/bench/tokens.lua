-- wrk script for `make bench`: every request carries a bearer token taken round robin from a
-- file of tokens (one a line), so the scenarios can send one token, many distinct tokens, or
-- tokens that are each sent once.
--
--   wrk -t2 -c32 -d10s --latency -s tokens.lua URL -- FILE [START] [COUNT] [THREADS]
--
-- FILE     tokens, one a line (an empty line is a request without a token)
-- START    index (0-based) of the first token used; default 0
-- COUNT    total number of responses after which the run stops (each of the THREADS threads
--          stops after COUNT / THREADS of them); 0 or absent: run for the -d duration
-- THREADS  the -t value, so that the threads share the tokens without overlap: thread k sends
--          tokens START + k, START + k + THREADS, ... (with COUNT <= #tokens - START, no token
--          is sent twice in the run)
-- DONE     with COUNT: a path prefix; thread k creates the file DONE<k> when it has stopped.
--          wrk itself runs until -d is over whatever its threads do, so bench.py waits for
--          these files and then ends wrk with SIGINT (wrk prints its summary as usual).

local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local path = args[1]
  local start = tonumber(args[2] or "0") or 0
  local count = tonumber(args[3] or "0") or 0
  threads = tonumber(args[4] or "1") or 1
  local done_prefix = args[5]
  local requests = {}
  for line in io.lines(path) do
    if line == "" then
      requests[#requests + 1] = wrk.format("GET", "/bench")
    else
      requests[#requests + 1] = wrk.format("GET", "/bench", { ["Authorization"] = "Bearer " .. line })
    end
  end
  if #requests == 0 then
    error("tokens.lua: no tokens in " .. path)
  end
  all = requests
  size = #requests
  next_index = start + (thread_id or 0)
  if count > 0 then
    local per_thread = math.ceil(count / threads)
    local answered = 0
    -- Defined only with COUNT: a response() makes wrk parse every answer.
    response = function(status, headers, body)
      answered = answered + 1
      if answered == per_thread then
        if done_prefix then
          local f = io.open(done_prefix .. tostring(thread_id or 0), "w")
          if f then
            f:close()
          end
        end
        wrk.thread:stop()
      end
    end
  end
end

function request()
  local r = all[(next_index % size) + 1]
  next_index = next_index + threads
  return r
end
