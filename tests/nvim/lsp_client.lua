-- Drive `splice lsp` from Neovim's built-in LSP client (headless), for tests/test_lsp_nvim.py.
-- Environment: SPLICE_LSP_CMD (JSON list), SPLICE_FILE (a file with conflict markers),
-- SPLICE_ACTION (the title of the code action to apply), SPLICE_REPORT (JSON written here).
-- Works with Neovim 0.7 (vim.lsp.start_client); 0.8+ could use vim.lsp.start instead.

local report = { diagnostics = {}, titles = {}, errors = {} }

local function finish()
  vim.fn.writefile({ vim.fn.json_encode(report) }, os.getenv("SPLICE_REPORT"))
  vim.cmd("qall!")
end

local function diagnostics(bufnr)
  return vim.diagnostic.get(bufnr, { severity = vim.diagnostic.severity.INFO })
end

local function run()
  vim.cmd("edit " .. vim.fn.fnameescape(os.getenv("SPLICE_FILE")))
  local bufnr = vim.api.nvim_get_current_buf()
  local client_id = vim.lsp.start_client({
    name = "splice",
    cmd = vim.fn.json_decode(os.getenv("SPLICE_LSP_CMD")),
    root_dir = vim.fn.fnamemodify(os.getenv("SPLICE_FILE"), ":p:h"),
    init_options = { resolver = "token-merge" },
  })
  vim.lsp.buf_attach_client(bufnr, client_id)
  if not vim.wait(30000, function() return #diagnostics(bufnr) > 0 end, 20) then
    table.insert(report.errors, "no diagnostics")
    return
  end
  local before = diagnostics(bufnr)
  for _, d in ipairs(before) do
    table.insert(report.diagnostics, {
      lnum = d.lnum, end_lnum = d.end_lnum, message = d.message, source = d.source,
      severity = d.severity,
    })
  end
  -- the cursor on the first conflict: the code actions there, as vim.lsp.buf.code_action asks
  vim.api.nvim_win_set_cursor(0, { before[1].lnum + 1, 0 })
  local params = vim.lsp.util.make_range_params()
  params.context = { diagnostics = {} }
  local results = vim.lsp.buf_request_sync(bufnr, "textDocument/codeAction", params, 10000)
  local wanted, chosen = os.getenv("SPLICE_ACTION"), nil
  for _, res in pairs(results or {}) do
    for _, action in ipairs(res.result or {}) do
      table.insert(report.titles, action.title)
      if action.title == wanted then chosen = action end
    end
  end
  if chosen == nil or chosen.edit == nil then
    table.insert(report.errors, "no action " .. wanted .. " with an edit")
    return
  end
  -- applied as Neovim applies a chosen code action's edit
  local client = vim.lsp.get_client_by_id(client_id)
  vim.lsp.util.apply_workspace_edit(chosen.edit, client.offset_encoding)
  local ok = vim.wait(10000, function() return #diagnostics(bufnr) == #before - 1 end, 20)
  if not ok then
    table.insert(report.errors, "diagnostics did not drop to " .. (#before - 1))
  end
  report.after = #diagnostics(bufnr)
  vim.cmd("write")
  vim.lsp.stop_client(client_id)
end

local ok, err = pcall(run)
if not ok then
  table.insert(report.errors, tostring(err))
end
finish()
