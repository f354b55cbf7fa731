-- wrk script of the read benchmark (test/bench/http-read.ts --client wrk): thread i reads from
-- target i (wrk-common.lua), GET READ_PATH on every request, as the undici client does.

dofile(os.getenv("WRK_COMMON"))

local path = os.getenv("READ_PATH")

function request()
  return wrk.format("GET", path)
end
